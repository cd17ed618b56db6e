r"""The spec of a hierarchical VAE (``model: hvae``): the IAF-VAE of Kingma et al. 2016
(arXiv:1606.04934, sec. 6 and appendix; openai/iaf's ``tf_train.py``), a ResNet VAE with a
latent feature map in every block, bidirectional inference and an IAF step per latent layer::

    model: hvae
    input: {shape: [1, 8, 8], levels: 17}
    latent: 8               # z channels of every latent layer (openai/iaf's z_size)
    hidden: 32              # channels of the residual stream and its convs (h_size)
    blocks: [2, 2]          # latent layers per resolution, bottom first; each later entry halves it
    stem: {kernel: 3, stride: 1}
    posterior: {kind: iaf, hidden: 32, depth: 2, kernel: 3}   # kind: diagonal has no IAF
    kl_min: 0.25            # free nats per latent channel and layer, on the batch-averaged KL
    likelihood: logistic
    scale: shared           # the logistic's log-scale: one learned number (openai/iaf) or per entry

A family of its own beside ``model: vae`` rather than options of it: the flat VAE's encoder,
decoder and one latent vector have nothing in common with a ladder of latent feature maps except
the likelihoods (:mod:`flowspec.vae.likelihoods`, shared) and the autoregressive layer (shared).
Shape rules (divisibility by the strides, the scale's likelihood) are checked by the graph
(:func:`flowspec.hvae.graph.build_hvae_graph`), where errors point at YAML lines.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, PositiveInt, PrivateAttr, field_validator

from flowspec.core.fields import ODD_KERNEL
from flowspec.spec.models import InputSpec, SpecName, StrictModel, register_spec_model
from flowspec.spec.training import TrainingConfig
from flowspec.vae.likelihoods import Likelihood, LogisticLikelihood


class StemConfig(StrictModel):
    """The conv from the data to the residual stream and its transpose back to the likelihood's
    parameters (openai/iaf: ``x_enc`` and ``x_dec``, 5x5, stride 2)."""

    kernel: Annotated[int, Field(ge=1, le=9, description="odd conv size"), ODD_KERNEL] = 3
    stride: Annotated[int, Field(ge=1, le=4, description="the stem divides the resolution by this")] = 1



class HPosteriorConfig(StrictModel):
    """``q(z_l | x, z_>l)``: a diagonal Gaussian (prior's parameters plus bottom-up deltas), refined
    by one IAF step of masked convs (:mod:`flowspec.layers.masked_conv`) unless ``kind: diagonal``."""

    kind: Literal["iaf", "diagonal"] = "iaf"
    hidden: Optional[PositiveInt] = Field(None, description="channels of the IAF's hidden masked convs "
                                                            "(default: hidden, the context then adds directly)")
    depth: Annotated[int, Field(ge=1, le=4, description="hidden masked convs of the IAF")] = 2
    kernel: Annotated[int, Field(ge=1, le=7, description="odd size of the masked convs"), ODD_KERNEL] = 3



class HVAESpec(StrictModel):
    """A hierarchical VAE spec; ``flowspec.compile`` turns it into a
    :class:`~flowspec.hvae.model.HVAEModel`."""

    name: Optional[SpecName] = None
    model: Literal["hvae"]
    input: InputSpec
    latent: Annotated[int, Field(ge=1, le=1024, description="z channels of every latent layer")]
    hidden: Annotated[int, Field(ge=1, le=4096, description="channels of the residual stream")] = 64
    blocks: Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=1, max_length=6)] = Field(
        default_factory=lambda: [2], description="latent layers per resolution, bottom first; each later "
                                                 "entry halves the resolution (its first layer downsamples)")
    stem: StemConfig = Field(default_factory=StemConfig)
    posterior: HPosteriorConfig = Field(default_factory=HPosteriorConfig)
    kl_min: Annotated[float, Field(ge=0, le=100, description="free nats per latent channel and layer, "
                                                             "on the batch-averaged KL (0: off)")] = 0.0
    residual_scale: Annotated[float, Field(gt=0, le=1, description="h <- h + scale * block(h)")] = 0.1
    likelihood: Likelihood = Field(
        default_factory=LogisticLikelihood, description="p(x|z) over the input's levels, a likelihood kind")
    scale: Literal["shared", "per_entry"] = Field(
        "shared", description="the logistic's log-scale: one learned number (shared) or one per entry "
                              "from the decoder")
    training: Optional[TrainingConfig] = Field(None, description="how `flowspec train` trains it")

    _source: Any = PrivateAttr(default=None)

    @field_validator("input")
    @classmethod
    def _discrete_image(cls, value: InputSpec) -> InputSpec:
        if value.continuous:
            raise ValueError("a hierarchical VAE's likelihood is over the input's integer levels; "
                             "input.data: continuous needs a flow spec")
        if len(value.shape) != 3:
            raise ValueError(f"a hierarchical VAE's latents are feature maps: input.shape must be [C, H, W], "
                             f"got {value.shape}")
        return value

    @property
    def source(self):
        """The :class:`~flowspec.spec.yaml_source.SourceMap` the spec was loaded from, if any."""
        return self._source

    @property
    def layers(self) -> int:
        """L, the number of latent layers."""
        return sum(self.blocks)

    @property
    def iaf(self) -> bool:
        return self.posterior.kind == "iaf"

    @property
    def iaf_hidden(self) -> int:
        return self.posterior.hidden or self.hidden


register_spec_model("hvae", HVAESpec)
