"""The spec language: pydantic v2 models of a flow spec.

Layer rows are a discriminated union over the registered layer kinds (``kind:``), plus
``{repeat: K, layers: [...]}`` blocks; a bare string (``- squeeze``) is short for ``{kind: squeeze}``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import MutableMapping
from typing import Annotated, Any, Literal, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr, field_validator,
                      model_serializer, model_validator)

from flowspec.columns import Column
from flowspec.layers import LAYER_KINDS
from flowspec.layers.kinds import KindUnion
from flowspec.layers.split import SplitConfig
from flowspec.priors import LearnedPrior, Prior
from flowspec.spec.condition import ClassCondition, Condition, VectorCondition  # noqa: F401
from flowspec.spec.training import TrainingConfig


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite


REPEAT_TAG = "repeat-block"
MAX_NAME_LENGTH = 128
NAME_PATTERN = r"^\w[\w.-]*$"  # letters, digits, _ first; then also . and -


def plain_name(name: str) -> str:
    """``name`` if it is a plain identifier, safe as one folder name under an output folder
    (``build/<name>/``, ``runs/<name>/``): letters, digits, ``_``, ``-`` and ``.``, starting with a
    letter, digit or ``_``, no ``..``, no separator, at most :data:`MAX_NAME_LENGTH` characters."""
    if len(name) > MAX_NAME_LENGTH or not re.fullmatch(NAME_PATTERN, name) or ".." in name:
        raise ValueError(f"name {name!r} is not a plain name: use letters, digits, '_', '-' and '.' "
                         f"(no '/', no '..', not starting with '.' or '-', at most {MAX_NAME_LENGTH} "
                         "characters); it names the output folder")
    return name


SpecName = Annotated[str, AfterValidator(plain_name), Field(
    description="the model's name, also its output folder's: letters, digits, _ - . (no '/', no '..')",
    json_schema_extra={"pattern": NAME_PATTERN, "maxLength": MAX_NAME_LENGTH})]


def _item_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return REPEAT_TAG if "repeat" in value else value.get("kind")
    if isinstance(value, RepeatBlock):
        return REPEAT_TAG
    return getattr(value, "kind", None)


class RepeatBlock(StrictModel):
    """``{repeat: K, layers: [...]}``: the layers, K times in a row."""

    repeat: PositiveInt
    layers: Annotated[list["LayerItem"], Field(min_length=1)]


class _RowJsonSchema:
    """The JSON Schema of a layer row: its mapping, or the bare name of a kind whose fields all
    have defaults (``- squeeze``), as the row union reads it."""

    def __get_pydantic_json_schema__(self, core_schema, handler):
        bare = sorted(kind for kind, config in LAYER_KINDS.items()
                      if not any(f.is_required() for f in config.model_fields.values()))
        return {"title": "LayerRow", "anyOf": [{"type": "string", "enum": bare}, handler(core_schema)]}


class _LayerRows(KindUnion):
    """A layer row: a registered layer kind (tagged by ``kind``) or a repeat block."""

    def _tag(self, value: Any) -> str | None:
        return _item_tag(value)


LayerItem = Annotated[Any, _LayerRows(LAYER_KINDS, "layer", extra=lambda: {REPEAT_TAG: RepeatBlock}), _RowJsonSchema()]
RepeatBlock.model_rebuild()


class InputSpec(StrictModel):
    """The data: its shape without the batch, ``[C, H, W]`` or ``[D]``, and whether it is discrete
    (integers ``0 .. levels-1``, dequantized, scored in bits/dim) or continuous (real values modelled
    as they are: no dequantization, no levels, scored in nats/dim)."""

    shape: Annotated[list[PositiveInt], Field(min_length=1, max_length=3)]
    levels: Annotated[int, Field(ge=2, le=65536)] = 256
    data: Literal["discrete", "continuous"] = Field(
        "discrete", description="discrete: integer levels, dequantized, bits/dim; continuous: real "
                                "values, no dequantization, nats/dim")

    bits: Optional[Annotated[int, Field(ge=1, le=8)]] = Field(
        None, description="reduce 8-bit data to n bits, x -> floor(x / 2^(8 - n)); levels is then 2^n")
    columns: Optional[list[Column]] = Field(
        None, description="types of a table's columns, each mapped to the real line: {kind: bounded, at: 3, "
                          "bounds: [0, 1]}, {kind: categorical, at: '4-5', classes: 3}, ...; unnamed columns "
                          "are real (continuous vectors only)")

    @model_validator(mode="after")
    def _columns_fit(self):
        if self.columns is None:
            return self
        if self.data != "continuous" or len(self.shape) != 1:
            raise ValueError("columns types a table's columns: they need data: continuous and shape [D]")
        owner: dict[int, int] = {}
        for number, entry in enumerate(self.columns):
            if entry.columns.stop > self.shape[0]:
                raise ValueError(f"columns[{number}] (at: {entry.at}) reaches column {entry.columns.stop - 1}, "
                                 f"but the table has {self.shape[0]} (0..{self.shape[0] - 1})")
            for i in entry.columns:
                if i in owner:
                    raise ValueError(f"column {i} is typed twice, by columns[{owner[i]}] and columns[{number}]")
                owner[i] = number
        return self

    @model_validator(mode="after")
    def _continuous_has_no_levels(self):
        if self.data == "continuous" and "levels" in self.model_fields_set:
            raise ValueError("continuous data has no levels; remove levels, or use data: discrete")
        return self

    @property
    def continuous(self) -> bool:
        return self.data == "continuous"

    @model_serializer(mode="wrap")
    def _without_levels_when_continuous(self, handler):
        """A dump loads back: continuous data has no levels to write (and ``data: discrete``, the
        default, is left out so discrete specs dump as before)."""
        data = handler(self)
        if self.continuous:
            data.pop("levels", None)
        else:
            data.pop("data", None)
        if self.bits is None:
            data.pop("bits", None)
        if self.columns is None:
            data.pop("columns", None)
        return data

    @model_validator(mode="after")
    def _levels_of_bits(self):
        if self.bits is not None:
            if self.data == "continuous":
                raise ValueError("bits reduces 8-bit discrete data; continuous data has no bits")
            if "levels" in self.model_fields_set and self.levels != 2 ** self.bits:
                raise ValueError(f"bits: {self.bits} gives {2 ** self.bits} levels, but levels is {self.levels} "
                                 f"(drop levels, or set it to {2 ** self.bits})")
            object.__setattr__(self, "levels", 2 ** self.bits)
        return self

    @field_validator("shape")
    @classmethod
    def _image_or_vector(cls, shape: list[int]) -> list[int]:
        if len(shape) == 2:
            raise ValueError("shape is [C, H, W] for images or [D] for vectors, not [H, W]; "
                             "write [1, H, W] for a grey image")
        return shape


# dequantizers' config models live with their modules (flowspec/dequant/config.py)
from flowspec.dequant.config import (ContextConfig, Dequantization, LogitPreprocess,  # noqa: E402,F401
                                     Preprocess, UniformDequantization, VariationalDequantization)


class MemoryConfig(StrictModel):
    """``memory:``: how a training step trades compute for memory."""

    invertible_backprop: bool = Field(
        False, description="recompute each step's activations from its output by inverting it "
                           "instead of storing them (RevNet-style); activation memory stays flat in K")


class Spec(StrictModel):
    """A flow spec: the input, the layers (explicit, or the compact multiscale form) and the prior."""

    name: Optional[SpecName] = None
    model: Literal["flow"] = "flow"
    input: InputSpec
    prior: Prior = Field(
        default_factory=LearnedPrior, description="prior of the top latent, a prior kind: learned N(mu, sigma) "
                                                 "per entry, learned_channel per channel (Glow's learntop: a zero conv on "
                                                 "zeros), standard N(0, I), the standard logistic of NICE "
                                                 "(arXiv:1410.8516), or mog: MAF's autoregressive mixture of "
                                                 "Gaussians (MADE MoG)")
    layers: Optional[list[LayerItem]] = None
    levels: Optional[Annotated[int, Field(ge=1, le=12)]] = None
    steps: Optional[Annotated[int, Field(ge=1, le=512)]] = None
    step: Optional[Annotated[list[LayerItem], Field(min_length=1)]] = None
    split: SplitConfig = Field(default_factory=SplitConfig,
                               description="config of the splits the compact form inserts")
    dequantization: Dequantization = Field(default_factory=UniformDequantization)
    preprocess: Optional[Preprocess] = Field(
        None, description="map of the dequantized data into model space: none (scale to [0,1), "
                          "centred as the dequantization says) or {kind: logit, alpha}")
    condition: Optional[Condition] = Field(
        None, description="what the flow is conditioned on, p(x | c): {kind: class, classes, embed} or "
                          "{kind: vector, dim, hidden}")
    training: Optional[TrainingConfig] = Field(None, description="how `flowspec train` trains it")
    memory: MemoryConfig = Field(default_factory=MemoryConfig,
                                 description="memory options of a training step")

    _source: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_form(self):
        compact = [f for f in ("levels", "steps", "step") if getattr(self, f) is not None]
        if self.layers is not None and compact:
            raise ValueError(f"give either layers or the compact form (levels, steps, step), "
                             f"not both ({', '.join(compact)} given with layers)")
        if self.layers is None and len(compact) != 3:
            missing = [f for f in ("levels", "steps", "step") if getattr(self, f) is None]
            if not compact:
                raise ValueError("a spec needs layers, or levels + steps + step")
            raise ValueError(f"the compact form needs levels, steps and step; missing {', '.join(missing)}")
        if self.layers is not None and not self.layers:
            raise ValueError("layers is empty; a flow needs at least one layer")
        return self

    @model_validator(mode="after")
    def _continuous_and_condition(self):
        if self.input.continuous:
            given = [f for f in ("dequantization", "preprocess") if f in self.model_fields_set
                     and getattr(self, f) is not None]
            if given:
                raise ValueError(f"input.data: continuous is modelled as it is; remove {' and '.join(given)} "
                                 f"(they map discrete levels into model space)")
        if self.condition is not None and self.condition.prior == "conditional" and not self.prior.conditionable:
            raise ValueError(f"a {self.prior.kind} top prior has no mean and scale to condition; use prior: learned "
                             "or standard, or condition.prior: plain")
        return self

    @model_serializer(mode="wrap")
    def _without_dequantization_when_continuous(self, handler):
        """A dump loads back: continuous data has no dequantization or preprocess to write; an
        unconditional spec dumps as before (no ``condition`` key)."""
        data = handler(self)
        if self.input.continuous:
            data.pop("dequantization", None)
            data.pop("preprocess", None)
        if self.condition is None:
            data.pop("condition", None)
        return data

    @property
    def source(self):
        """The :class:`~flowspec.spec.yaml_source.SourceMap` the spec was loaded from, if any."""
        return self._source


class SpecModels(MutableMapping):
    """Spec models by ``model:`` name. A value may be a ``"package.module:Name"`` reference, imported
    on its first lookup, so that a family whose specs are not being read costs no import."""

    def __init__(self, models: dict):
        self._models = dict(models)

    def __getitem__(self, name: str) -> type[BaseModel]:
        model = self._models[name]
        if isinstance(model, str):
            module, _, attribute = model.partition(":")
            model = self._models[name] = getattr(importlib.import_module(module), attribute)
        return model

    def __setitem__(self, name: str, model) -> None:
        self._models[name] = model

    def __delitem__(self, name: str) -> None:
        del self._models[name]

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __iter__(self):
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)


#: spec models by ``model:`` name; other families register theirs (:func:`register_spec_model`)
SPEC_MODELS = SpecModels({"flow": Spec})


def register_spec_model(name: str, model) -> type[BaseModel] | str:
    """Make ``model: name`` parse into ``model`` (a family's spec, e.g. the VAE's), a class or a
    ``"package.module:Name"`` reference imported when a spec first names it."""
    SPEC_MODELS[name] = model
    return model
