"""The spec of a VAE (``model: vae``): input, latent size, encoder, decoder, likelihood, posterior.

A VAE (Kingma & Welling 2014, arXiv:1312.6114) whose Gaussian posterior ``q(z_0|x) =
N(mu(x), sigma(x)^2)`` is refined by K inverse autoregressive flow steps (Kingma et al. 2016,
arXiv:1606.04934)::

    model: vae
    input: {shape: [1, 8, 8], levels: 17}
    latent: 16
    encoder: {kind: conv, hidden: 32, depth: 2, context: 16}
    decoder: {kind: conv, hidden: 32, depth: 2}
    likelihood: logistic
    posterior: {kind: iaf, steps: 4, hidden: 64}

Shape rules (conv needs an image, Bernoulli needs 2 levels, MADE width) are checked by the
graph (:func:`flowspec.vae.graph.build_vae_graph`), where errors point at YAML lines.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, PositiveInt, PrivateAttr, field_validator

from flowspec.spec.models import InputSpec, SpecName, StrictModel, register_spec_model
from flowspec.spec.training import TrainingConfig
from flowspec.vae.likelihoods import Likelihood, LogisticLikelihood


class _Network(StrictModel):
    """What the encoder and decoder share: ``kind`` conv (images) or mlp, by the input by default."""

    def network_kind(self, shape) -> str:
        """The kind written, or conv for an image input and mlp for a vector."""
        return self.kind or ("conv" if len(shape) == 3 else "mlp")

    def convolutional(self, shape) -> bool:
        return self.network_kind(shape) == "conv"

    def shape_problem(self, part: str, shape) -> tuple[str, str] | None:
        """A conv network on a vector input: ``(message, hint)``."""
        if self.convolutional(shape) and len(shape) != 3:
            return f"a conv {part} needs an image input (C, H, W), got {tuple(shape)}", "use kind: mlp for vector data"
        return None


class EncoderConfig(_Network):
    """``x -> (mu(x), sigma(x), h(x))``: conv (images) or mlp; ``context`` is the size of h."""

    kind: Optional[Literal["conv", "mlp"]] = Field(
        None, description="conv for images, mlp for vectors (default: by the input's shape)")
    hidden: PositiveInt = Field(64, description="channels (conv) or units (mlp) per layer")
    depth: Annotated[int, Field(ge=1, le=8)] = 2
    context: Annotated[int, Field(ge=0, le=4096, description="size of the context h(x) fed to "
                                                                 "every IAF step")] = 16


class DecoderConfig(_Network):
    """``z -> parameters of p(x|z)``: conv (images, mirrors the encoder's resolution) or mlp."""

    kind: Optional[Literal["conv", "mlp"]] = Field(
        None, description="conv for images, mlp for vectors (default: by the input's shape)")
    hidden: PositiveInt = 64
    depth: Annotated[int, Field(ge=1, le=8)] = 2


class PosteriorConfig(StrictModel):
    """``q(z|x)``: diagonal Gaussian, refined by ``steps`` IAF steps of MADE width ``hidden``."""

    kind: Literal["iaf", "diagonal"] = "iaf"
    steps: Annotated[int, Field(ge=0, le=64)] = 0
    hidden: PositiveInt = Field(64, description="units per MADE hidden layer")
    depth: Annotated[int, Field(ge=1, le=4, description="MADE hidden layers")] = 1
    gate_bias: Annotated[float, Field(ge=0, le=5, description="initial bias on s, so that "
                                                               "sigma = sigmoid(s) starts near 1")] = 2.0


class VAESpec(StrictModel):
    """A VAE spec; ``flowspec.compile`` turns it into a :class:`~flowspec.vae.model.VAEModel`."""

    name: Optional[SpecName] = None
    model: Literal["vae"]
    input: InputSpec
    latent: Annotated[int, Field(ge=1, le=65536, description="size of z")]
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    likelihood: Likelihood = Field(
        default_factory=LogisticLikelihood, description="p(x|z) over the input's levels, a likelihood kind: "
                                                       "bernoulli (levels 2), discretised logistic, or categorical")
    posterior: PosteriorConfig = Field(default_factory=PosteriorConfig)
    prior: Literal["standard"] = Field("standard", description="p(z) = N(0, I)")
    training: Optional[TrainingConfig] = Field(None, description="how `flowspec train` trains it")

    _source: Any = PrivateAttr(default=None)

    @field_validator("input")
    @classmethod
    def _discrete_input(cls, value: InputSpec) -> InputSpec:
        if value.continuous:
            raise ValueError("a VAE's likelihood (bernoulli, logistic, categorical) is over the input's integer "
                             "levels; input.data: continuous needs a flow spec")
        return value

    @field_validator("training")
    @classmethod
    def _no_noise_augmentation(cls, value: Optional[TrainingConfig]) -> Optional[TrainingConfig]:
        if value is not None and value.noise:
            raise ValueError("noise: noise augmentation and its denoiser are for flows (the score of a VAE's "
                             "bound is not its density's); drop training.noise")
        return value

    @property
    def source(self):
        """The :class:`~flowspec.spec.yaml_source.SourceMap` the spec was loaded from, if any."""
        return self._source

    @property
    def iaf_steps(self) -> int:
        return self.posterior.steps if self.posterior.kind == "iaf" else 0


register_spec_model("vae", VAESpec)
