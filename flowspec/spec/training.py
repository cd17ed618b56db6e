"""The ``training:`` section of a spec: optimizer, schedule, EMA, intervals, device.

Learning rate with linear warm-up (Kingma & Dhariwal 2018, arXiv:1807.03039, use a warm-up too):
``lr(t) = lr * min(1, (t + 1) / warmup)``. EMA (Polyak averaging, Polyak & Juditsky 1992):
``theta_ema <- decay * theta_ema + (1 - decay) * theta`` after every step; evaluation and sampling
use the averaged weights.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

DATA_SETS = ("digits", "mnist", "cifar10", "folder", "npz", "csv", "wine", "moons", "diabetes", "power", "gas", "hepmass",
             "miniboone", "bsds300")
"""The data sets ``training.data`` may name (the kinds of :func:`flowspec.data.load_data`)."""
DEFAULT_DATA = "digits"


MAX_BATCH = 65_536  # examples in one batch
MAX_STEPS = 10 ** 9  # steps, warm-up and every interval
MAX_EPOCHS = 10 ** 6


class TrainingConfig(BaseModel):
    """How to train a spec. Every field can be overridden on the command line."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite

    optimizer: Literal["adam", "adamax"] = "adam"
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3
    warmup: Annotated[int, Field(ge=0, le=MAX_STEPS, description="steps of linear lr warm-up")] = 200
    lr_decay: Literal["none", "cosine"] = Field(
        "none", description="after warm-up: keep lr, or cosine-decay it to lr_min_ratio * lr")
    lr_min_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    weight_decay_on: Literal["all", "scales"] = Field(
        "all", description="the parameters weight_decay acts on: all, or only the weight-norm gains g and the "
                           "affine transform's tanh scales (RealNVP's official L2)")
    grad_clip: Optional[Annotated[float, Field(gt=0)]] = Field(
        50.0, description="clip the global gradient norm to this value (null: no clipping)")
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 64
    steps: Optional[Annotated[int, Field(ge=1, le=MAX_STEPS)]] = 1000
    epochs: Optional[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = None
    ema: Optional[Annotated[float, Field(ge=0, lt=1)]] = Field(
        0.999, description="EMA decay of the weights used for eval and sampling (null: off)")
    seed: Annotated[int, Field(ge=0, le=2 ** 63 - 1)] = 0
    device: Literal["cpu", "cuda", "auto"] = "auto"
    bf16: Literal["auto", True, False] = Field(
        "auto", description="bf16 autocast of the training forward pass: auto = on a GPU only; true = "
                            "on the CPU too (pays where it has native bf16: AVX512-BF16, AMX); false = off")

    compile: bool = Field(
        False, description="torch.compile the loss (forward and backward), evaluation and sampling, each one "
                           "graph (fullgraph=True); compiling takes seconds to minutes, so it pays on long runs")

    def autocast_bf16(self, device_type: str) -> bool:
        """Whether the training forward pass runs under bf16 autocast on ``device_type``."""
        return self.bf16 is True or (self.bf16 == "auto" and device_type == "cuda")
    eval_every: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 500
    checkpoint_every: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 500
    sample_every: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 1000
    samples: Annotated[int, Field(ge=1, le=1024)] = 64
    temperature: Annotated[float, Field(gt=0)] = 0.7
    eval_batches: Optional[Annotated[int, Field(ge=1, le=MAX_STEPS)]] = Field(
        None, description="test batches per periodic evaluation (null: the whole test split)")
    flip: bool = Field(False, description="mirror each training image left-right with probability 1/2")
    shift: Annotated[float, Field(ge=0, lt=0.5)] = Field(
        0.0, description="translate each training image by up to this fraction of its height and width, "
                         "uniformly at random, bilinear with the border repeated, then floored to the levels "
                         "(Glow's CIFAR-10 loader: 0.1)")
    init_batch: Optional[Annotated[int, Field(ge=1)]] = Field(
        None, description="examples of the data-dependent init (actnorm), split over ranks like batch_size "
                          "(null: the first training batch)")
    betas: Optional[Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)]] = Field(
        None, description="Adam / Adamax (beta1, beta2) (null: 0.9, 0.999)")
    polyak_epochs: Optional[Annotated[float, Field(gt=0)]] = Field(
        None, description="Glow's optim.py: the EMA decay and beta2 are both 1 - 1 / (steps per epoch * "
                          "polyak_epochs), replacing ema's value and the default beta2")
    data: Optional[Literal[DATA_SETS]] = Field(
        None, description="the data set `flowspec train` reads (its --data overrides it; null: digits); "
                          "mnist, cifar10, folder, npz and csv read files given with --data-dir")
    standardize: bool = Field(
        False, description="continuous data: scale each feature to zero mean, unit std (train statistics; "
                           "--standardize / --no-standardize override it)")
    noise: float = Field(
        0.0, description="sigma of Gaussian noise added to the model's input in training, after dequantization "
                         "and preprocessing (TarFlow's noise augmentation); the model is then a density of the "
                         "noisy data and FlowModel.denoise / `sample --denoise` remove the noise (0: off)",
        json_schema_extra={"minimum": 0})

    @field_validator("noise")
    @classmethod
    def _noise_is_a_standard_deviation(cls, noise: float) -> float:
        if noise < 0:
            raise ValueError(f"noise is the standard deviation sigma of the training noise: >= 0, got {noise}")
        return noise

    @model_validator(mode="after")
    def _steps_or_epochs(self):
        if self.epochs is not None and "steps" in self.model_fields_set and self.steps is not None:
            raise ValueError("give steps or epochs, not both")
        return self

    @model_validator(mode="after")
    def _one_polyak_decay(self):
        if self.polyak_epochs is not None and self.ema is None:
            raise ValueError("polyak_epochs sets the EMA decay; it needs ema (drop ema: null)")
        if self.polyak_epochs is not None and self.betas is not None:
            raise ValueError("polyak_epochs sets beta2; give polyak_epochs or betas, not both")
        return self

    def polyak_decay(self, batches_per_epoch: int) -> float | None:
        """The EMA decay: ``1 - 1 / (batches_per_epoch * polyak_epochs)`` when ``polyak_epochs`` is
        given (Glow's ``optim.py``), else ``ema``."""
        if self.polyak_epochs is None or self.ema is None:
            return self.ema
        return 1.0 - 1.0 / (batches_per_epoch * self.polyak_epochs)

    def adam_betas(self, batches_per_epoch: int) -> tuple[float, float]:
        """``betas``, or ``(0.9, polyak decay)`` with ``polyak_epochs``, or torch's ``(0.9, 0.999)``."""
        if self.betas is not None:
            return tuple(self.betas)
        if self.polyak_epochs is not None:
            return 0.9, self.polyak_decay(batches_per_epoch)
        return 0.9, 0.999

    @model_serializer(mode="wrap")
    def _one_length(self, handler):
        """A dump names the run's length once: ``epochs`` when given, else ``steps`` (so that
        ``flowspec expand`` writes a spec that loads back)."""
        data = handler(self)
        if self.epochs is not None:
            data.pop("steps", None)
        return data

    @property
    def data_set(self) -> str:
        """The data set to read: ``data``, else digits."""
        return self.data or DEFAULT_DATA

    def total_steps(self, batches_per_epoch: int) -> int:
        """Steps to run: ``steps``, or ``epochs * batches_per_epoch`` when epochs are given."""
        if self.epochs is not None:
            return self.epochs * batches_per_epoch
        return int(self.steps)

    def lr_factor(self, step: int, total: int) -> float:
        """Multiplier of ``lr`` at ``step`` (0-based): linear warm-up, then constant or cosine."""
        import math

        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.lr_decay == "cosine" and step >= self.warmup and total > self.warmup:
            progress = (step - self.warmup) / max(1, total - self.warmup)
            return self.lr_min_ratio + (1 - self.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return warm


def override(config: TrainingConfig, **values) -> TrainingConfig:
    """``config`` with the given non-``None`` values replaced (validated again). Giving ``epochs``
    clears ``steps`` and the other way round."""
    from pydantic import ValidationError

    from flowspec.errors import Problem, SpecError

    given = {key: value for key, value in values.items() if value is not None}
    merged = config.model_dump()
    if "epochs" in given:
        merged["steps"] = None
    if "steps" in given:
        merged["epochs"] = None
    merged.update(given)
    try:
        return TrainingConfig(**merged)
    except ValidationError as error:
        raise SpecError([Problem(e["msg"], path=("training", *e["loc"]), file="<command line>")
                         for e in error.errors()]) from None
