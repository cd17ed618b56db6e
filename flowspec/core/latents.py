r"""Latent tools of every family: encode, decode, interpolate and attribute manipulation (Glow's demos,
Kingma & Dhariwal 2018, arXiv:1807.03039, sec. 5 and fig. 5-6).

encode (data ``x in {0..n-1}^D``, one point per bin: its centre):
    ``v = x + 1/2``, ``(y, log|dy/dv|) = to_model_space(v)``, ``(z_1, ..., z_L) = f(y)``,
    ``log p(v) = sum_i log p_i(z_i | ...) + log|det df/dy| + log|dy/dv|`` (nats; the continuous
    density at the bin centre, not the discrete probability of ``x``).
decode: ``y = f^{-1}(z_1, ..., z_L)``, ``x = floor(v(y))`` clamped to ``0..n-1``. The centre sits
    1/2 away from both bin edges, so ``decode(encode(x)) == x`` exactly whenever the flow's round
    trip moves ``v`` by less than 1/2 (float32 moves it by ~1e-5 on a trained digits Glow).
interpolate: linear ``(1 - t) a + t b`` or spherical
    ``sin((1 - t) W) / sin W a + sin(t W) / sin W b`` with ``cos W = <a, b> / |a||b|`` over the
    concatenated latents of each pair; both give ``a`` at ``t = 0`` and ``b`` at ``t = 1`` exactly.
attribute direction: ``d = mean_{x in toward} z(x) - mean_{x in away} z(x)`` (every latent);
manipulate: ``z' = z + s d`` for each strength ``s`` (``s = 0`` is ``z`` itself).

Every latent is kept, the factored-out ones included: decoding needs all of them, and resampling
the factored ones (what Glow's sampler does) breaks exact reconstruction.

Each model family says how its data and latents map through a :class:`LatentCodec` on its
:class:`~flowspec.family.Family` record: the flow's (above) is
:data:`flowspec.compile.latents.FLOW_CODEC`, the VAE's (posterior centre, most likely levels)
:data:`flowspec.vae.latents.VAE_CODEC`. These tools are family-neutral: they go through the codec.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from flowspec.errors import DataError, FlowSpecError
from flowspec.files import open_for_writing

LATENTS_FORMAT = "flowspec-latents/1"
DIRECTION_FORMAT = "flowspec-direction/1"
MAX_LATENT_FILE_BYTES = 2 ** 30  # a latents or direction file's arrays, once read
#: spec fields outside a model's identity: its name, how it is trained (weights differ between
#: runs regardless) and how its memory is spent
_NOT_IDENTITY = ("name", "training", "memory", "source")


def spec_fingerprint(model) -> str:
    """16 hex digits of the SHA-256 of the model's spec (input, prior, layers, dequantization,
    preprocessing; not its name, training or memory options) and its latent shapes: latents
    decode only with a model whose fingerprint matches."""
    spec = {key: value for key, value in model.spec.model_dump(mode="json").items() if key not in _NOT_IDENTITY}
    identity = {"spec": spec, "latent_shapes": [list(shape) for shape in latent_shapes(model)]}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LatentCodec:
    """How a model family maps data to latents and back; the latent tools look it up from the
    spec's ``model:`` (``Family.latents``) and never branch on the family.

    - ``shapes(model)``: the latent shapes, top last;
    - ``encode(model, x)``: integer data -> ``(zs, log_density or None)`` (one chunk, no grad);
    - ``decode(model, zs, temperature, generator)``: latents -> the model-space point (flows) or
      the data (families without one); ``temperature`` redraws the factored latents, if any;
    - ``to_data(model, y)``: that point -> integer levels;
    - ``to_continuous(model, y)``: that point -> ``v`` before flooring, or ``None`` when the
      family has no such value.
    """

    shapes: Callable
    encode: Callable
    decode: Callable
    to_data: Callable
    to_continuous: Callable | None = None


def codec(model) -> LatentCodec:
    """The :class:`LatentCodec` of ``model``'s family, or a one-line :class:`FlowSpecError`."""
    from flowspec.family import family_of

    family = family_of(model.spec)
    found = getattr(family, "latents", None)
    if found is None:
        raise FlowSpecError(f"latents: a model: {family.name} spec has no latent codec")
    return found


def latent_shapes(model) -> list[tuple[int, ...]]:
    """The latent shapes of ``model`` (a flow's factored ones in order, the top one last)."""
    return [tuple(shape) for shape in codec(model).shapes(model)]


def _spec_name(model) -> str:
    return model.spec.name or "<unnamed>"


@dataclass
class Latents:
    """Every latent of a batch: ``zs`` are the factored-out latents in order, the top one last,
    each ``(N, *shape)``; ``log_density`` is ``log p(v)`` in nats at the encoded point (``None``
    for latents made by :func:`interpolate` or :func:`manipulate`); ``spec_name`` and
    ``fingerprint`` (:func:`spec_fingerprint`) say which flow they belong to."""

    zs: list[Tensor]
    spec_name: str
    fingerprint: str
    log_density: Tensor | None = None

    def __len__(self) -> int:
        return self.zs[0].shape[0]

    @property
    def top(self) -> Tensor:
        return self.zs[-1]

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(z.shape[1:]) for z in self.zs]

    def select(self, index) -> "Latents":
        """The examples at ``index`` (an int, a slice or a list of positions)."""
        if isinstance(index, int):
            index = [index]
        return replace(self, zs=[z[index] for z in self.zs],
                       log_density=None if self.log_density is None else self.log_density[index])

    @staticmethod
    def cat(parts: list["Latents"]) -> "Latents":
        """Concatenate batches of latents of one flow."""
        first = parts[0]
        for part in parts[1:]:
            _same_flow(first, part, "latents", against="the first part's spec")
        densities = [part.log_density for part in parts]
        return replace(first, zs=[torch.cat(group) for group in zip(*(part.zs for part in parts))],
                       log_density=None if any(d is None for d in densities) else torch.cat(densities))

    def save(self, path: str | Path) -> Path:
        """An ``.npz`` with ``z0 .. z{L-1}`` (top last), ``log_density`` when known and the flow's
        identity (``format``, ``spec_name``, ``fingerprint``)."""
        arrays = {f"z{i}": z.detach().cpu().numpy() for i, z in enumerate(self.zs)}
        if self.log_density is not None:
            arrays["log_density"] = self.log_density.detach().cpu().numpy()
        return _save_npz(path, LATENTS_FORMAT, self.spec_name, self.fingerprint, arrays)

    @classmethod
    def load(cls, path: str | Path) -> "Latents":
        """Read what :meth:`save` wrote; a clear :class:`DataError` for anything else."""
        arrays, spec_name, fingerprint = _load_npz(path, LATENTS_FORMAT, "latents (flowspec encode)")
        zs = _numbered(arrays, "z", path)
        if len({z.shape[0] for z in zs}) != 1:
            raise DataError(f"{path}: its latents hold different numbers of examples "
                            f"({', '.join(str(z.shape[0]) for z in zs)})")
        density = arrays.get("log_density")
        if density is not None:
            density = _real_array(density, "log_density", path, finite=False)
            if density.shape != (zs[0].shape[0],):
                raise DataError(f"{path}: log_density has shape {list(density.shape)}; it holds one number per "
                                f"example, [{zs[0].shape[0]}]")
        return cls([torch.from_numpy(z) for z in zs], spec_name, fingerprint,
                   torch.from_numpy(density) if density is not None else None)


@dataclass
class Direction:
    """An attribute direction: one tensor per latent, ``(1, *shape)``, the mean latent of the
    ``toward`` group minus the ``away`` group's (:func:`attribute_direction`)."""

    vs: list[Tensor]
    spec_name: str
    fingerprint: str
    toward: str = ""
    away: str = ""
    counts: tuple[int, int] = field(default=(0, 0))

    def norm(self) -> float:
        return math.sqrt(sum(float(v.double().pow(2).sum()) for v in self.vs))

    def save(self, path: str | Path) -> Path:
        arrays = {f"d{i}": v.detach().cpu().numpy() for i, v in enumerate(self.vs)}
        arrays["toward"] = np.array(self.toward)
        arrays["away"] = np.array(self.away)
        arrays["counts"] = np.array(self.counts, dtype=np.int64)
        return _save_npz(path, DIRECTION_FORMAT, self.spec_name, self.fingerprint, arrays)

    @classmethod
    def load(cls, path: str | Path) -> "Direction":
        arrays, spec_name, fingerprint = _load_npz(path, DIRECTION_FORMAT, "a direction (--save-direction)")
        vs = _numbered(arrays, "d", path)
        for i, v in enumerate(vs):
            if v.shape[0] != 1:
                raise DataError(f"{path}: d{i} has {v.shape[0]} rows; a direction is one row per latent, "
                                f"shape [1, ...]")
        counts = arrays.get("counts", np.zeros(2, dtype=np.int64))
        if counts.dtype.kind not in "iu" or counts.shape != (2,) or bool((counts < 0).any()):
            raise DataError(f"{path}: counts is {counts.dtype} of shape {list(counts.shape)}; it holds the two "
                            f"groups' example counts, two integers >= 0")
        names = []
        for key in ("toward", "away"):
            name = arrays.get(key, np.array(""))
            if name.dtype.kind != "U" or name.shape != ():
                raise DataError(f"{path}: {key} is {name.dtype} of shape {list(name.shape)}; it holds the group's name, "
                                f"one string")
            names.append(str(name))
        return cls([torch.from_numpy(v) for v in vs], spec_name, fingerprint, *names, (int(counts[0]), int(counts[1])))


# -- files ------------------------------------------------------------------------------------
def _save_npz(path: str | Path, kind: str, spec_name: str, fingerprint: str, arrays: dict) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise DataError(f"{path}: latents and directions are written to .npz files")
    with open_for_writing(path) as stream:
        np.savez(stream, format=np.array(kind), spec_name=np.array(spec_name), fingerprint=np.array(fingerprint),
                 **arrays)
    return path


def _array_bytes(loaded, key: str) -> int:
    """Bytes that ``loaded[key]`` would take, from its ``.npy`` header (nothing decompressed)."""
    with loaded.zip.open(f"{key}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
    return math.prod(shape) * dtype.itemsize


def _load_npz(path: str | Path, kind: str, what: str) -> tuple[dict, str, str]:
    """The arrays of a latents or direction ``.npz``, at most :data:`MAX_LATENT_FILE_BYTES` of them
    once read (a compressed file is measured before it is decompressed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as loaded:
            size = sum(_array_bytes(loaded, key) for key in loaded.files)
            if size > MAX_LATENT_FILE_BYTES:
                raise DataError(f"{path}: its arrays take {size / 2 ** 20:,.1f} MiB once read; a latents or direction "
                                f"file is at most {MAX_LATENT_FILE_BYTES / 2 ** 20:,.0f} MiB")
            arrays = {key: loaded[key] for key in loaded.files}
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{path}: not a readable .npz ({type(error).__name__})") from None
    found = str(arrays.pop("format", ""))
    if found != kind:
        raise DataError(f"{path}: not {what}" + (f"; it holds {found[:80]!r}" if found else ""))
    return arrays, str(arrays.pop("spec_name", "")), str(arrays.pop("fingerprint", ""))


def _real_array(array: np.ndarray, name: str, path, finite: bool = True) -> np.ndarray:
    """``array`` if it holds real numbers (floats, or integers as float32), at least one row, and
    with ``finite`` no NaN or infinity; a :class:`DataError` naming the file and array otherwise."""
    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        kind = {"c": "complex numbers", "U": "strings", "S": "bytes", "b": "booleans"}.get(array.dtype.kind, "objects")
        raise DataError(f"{path}: {name} holds {kind} ({array.dtype}); latents are real numbers")
    if array.ndim == 0:
        raise DataError(f"{path}: {name} is a single number (0-d); it holds one row per example")
    if array.dtype.kind != "f":
        array = array.astype(np.float32)
    if finite:
        bad = ~np.isfinite(array)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataError(f"{path}: {name} holds NaN or infinite values (row {row}); latents are finite numbers")
    return array


def _numbered(arrays: dict, prefix: str, path) -> list[np.ndarray]:
    """``prefix0``, ``prefix1``, ... each checked by :func:`_real_array`, with at least one row."""
    found = []
    while f"{prefix}{len(found)}" in arrays:
        name = f"{prefix}{len(found)}"
        array = _real_array(arrays[name], name, path)
        if array.ndim == 1 or array.shape[0] == 0:
            raise DataError(f"{path}: {name} has shape {list(array.shape)}; it holds at least one row "
                            f"of latents, shape [rows, ...]")
        found.append(array)
    if not found:
        raise DataError(f"{path}: no arrays {prefix}0, {prefix}1, ...")
    return found


# -- checks -----------------------------------------------------------------------------------
def _same_flow(reference, other, what: str, where: str = "", against: str = "this model's spec") -> None:
    if other.fingerprint != reference.fingerprint:
        raise DataError(f"{where + ': ' if where else ''}{what} of spec {other.spec_name!r} (fingerprint "
                        f"{other.fingerprint}), {against} is {reference.spec_name!r} (fingerprint {reference.fingerprint})")


def check_latents(model, latents: Latents | Direction, where: str = "") -> None:
    """A :class:`DataError` unless ``latents`` belong to ``model``'s flow: same fingerprint, and
    tensors of its latent shapes."""
    what = "a direction" if isinstance(latents, Direction) else "latents"
    reference = Latents([], _spec_name(model), spec_fingerprint(model))
    _same_flow(reference, latents, what, where)
    tensors = latents.vs if isinstance(latents, Direction) else latents.zs
    found = [tuple(t.shape[1:]) for t in tensors]
    expected = latent_shapes(model)
    if found != expected:
        raise DataError(f"{where + ': ' if where else ''}{what} with latent shapes {found}, this model's are {expected}")


def check_data(model, x: Tensor, where: str = "inputs") -> None:
    """A :class:`DataError` unless ``x`` is ``(N, *input_shape)`` of integers ``0..levels-1``."""
    shape = tuple(model.input_shape)
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise DataError(f"{where}: examples of shape {list(x.shape[1:])}, the spec's input.shape is {list(shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{where}: no examples")
    low, high = x.min().item(), x.max().item()
    if low < 0 or high > model.levels - 1 or not torch.equal(x, x.floor()):
        raise DataError(f"{where}: values span {low:g}..{high:g}; the spec's input.levels is {model.levels} "
                        f"(integers 0..{model.levels - 1})")


def _reference(model) -> Tensor:
    return next(model.parameters(), torch.zeros(()))


class _EvalMode:
    """Run the model in eval mode (actnorm must not re-initialise on encoded data), then restore."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


# -- encode / decode --------------------------------------------------------------------------
def check_supported(model) -> None:
    """The latent tools work on unconditional models of discrete data: a :class:`FlowSpecError`
    naming the spec field otherwise (a conditional model's latents depend on its condition)."""
    condition = getattr(model.spec, "condition", None)
    if condition is not None:
        raise FlowSpecError(f"the latent tools work on unconditional models; this one is conditional "
                            f"(condition: {{kind: {condition.kind}}}), use log_prob(x, condition=c) / sample(n, condition=...)")
    if getattr(model.spec.input, "continuous", False):
        raise FlowSpecError("the latent tools encode discrete levels; this model's input.data is continuous "
                            "(model(x) gives its latents)")


@torch.no_grad()
def encode(model, x: Tensor, batch_size: int = 256, progress: Callable[[int], None] | None = None) -> Latents:
    """Every latent of integer-valued data ``x`` ``(N, *input_shape)`` (a flow's at the centre
    ``x + 1/2`` of each bin, with ``log p(v)`` there); ``progress(k)`` is called after each chunk
    of ``k`` examples."""
    check_supported(model)
    family = codec(model)
    check_data(model, x)
    reference = _reference(model)
    chunks: list[list[Tensor]] = []
    densities = []
    with _EvalMode(model):
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size].to(device=reference.device, dtype=reference.dtype)
            zs, density = family.encode(model, chunk)
            chunks.append(zs)
            densities.append(density)
            if progress is not None:
                progress(chunk.shape[0])
    zs = [torch.cat(group) for group in zip(*chunks)]
    known = all(d is not None for d in densities)
    return Latents(zs, _spec_name(model), spec_fingerprint(model), torch.cat(densities) if known else None)


@torch.no_grad()
def decode(model, latents: Latents, *, continuous: bool = False, temperature: float | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """Data space of ``latents``: integer levels ``0..n-1`` (floats), or with ``continuous`` the
    point ``v in [0, n)`` before flooring. ``temperature`` (a number) keeps the top latent and
    draws every factored one afresh from its conditional prior at that temperature (a flow
    without splits, and a VAE, have none)."""
    check_supported(model)
    family = codec(model)
    if continuous and family.to_continuous is None:
        raise FlowSpecError(f"the continuous value before flooring works on flow specs; this is a "
                            f"model: {getattr(model.spec, 'model', '?')} spec")
    check_latents(model, latents)
    reference = _reference(model)
    zs = [z.to(device=reference.device, dtype=reference.dtype) for z in latents.zs]
    with _EvalMode(model):
        y = family.decode(model, zs, temperature, generator)
        return family.to_continuous(model, y) if continuous else family.to_data(model, y)


def round_trip_error(model, x: Tensor, latents: Latents | None = None) -> tuple[float, float | None]:
    """``(max|decode(encode(x)) - x|, max|v' - (x + 1/2)|)``: the data-space error (0 for an exact
    flow) and the continuous one before flooring (``None`` for a family without one: a VAE)."""
    latents = latents if latents is not None else encode(model, x)
    back = decode(model, latents).cpu()
    x = x.to(back.dtype)
    if codec(model).to_continuous is None:
        return (back - x).abs().max().item(), None
    continuous = decode(model, latents, continuous=True).cpu()
    return (back - x).abs().max().item(), (continuous - (x + 0.5)).abs().max().item()


# -- interpolation and manipulation -----------------------------------------------------------
def interpolate(a: Latents, b: Latents, steps: int = 8, method: str = "linear", top_only: bool = False) -> Latents:
    """``steps`` latents from each ``a[i]`` to ``b[i]`` (``t = 0 .. 1``), ``len(a) * steps``
    examples, pair by pair. ``method``: ``linear`` or ``spherical`` (one angle over the
    concatenated interpolated latents). ``top_only`` interpolates the top latent and holds the
    factored ones at ``a``'s (decode them with a ``temperature`` to draw them instead)."""
    if method not in ("linear", "spherical"):
        raise FlowSpecError(f"unknown interpolation {method!r}: linear or spherical")
    if steps < 2:
        raise FlowSpecError(f"interpolation needs at least 2 steps (the two ends), got {steps}")
    _same_flow(a, b, "end latents", "interpolate", against="the start's spec")
    if len(a) != len(b):
        raise FlowSpecError(f"interpolate: {len(a)} start latents and {len(b)} end latents; give as many of each")
    moving = [len(a.zs) - 1] if top_only else list(range(len(a.zs)))
    flat_a = torch.cat([a.zs[i].flatten(1) for i in moving], dim=1)
    flat_b = torch.cat([b.zs[i].flatten(1) for i in moving], dim=1)
    t = torch.linspace(0, 1, steps, dtype=flat_a.dtype, device=flat_a.device)
    if method == "linear":
        path = (1 - t)[None, :, None] * flat_a[:, None] + t[None, :, None] * flat_b[:, None]
    else:
        path = _slerp(flat_a, flat_b, t)
    zs = [z.repeat_interleave(steps, dim=0) for z in a.zs]
    offset = 0
    for i in moving:
        size = a.zs[i][0].numel()
        zs[i] = path[:, :, offset:offset + size].reshape(len(a) * steps, *a.zs[i].shape[1:]).contiguous()
        offset += size
    return Latents(zs, a.spec_name, a.fingerprint)


def _slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """``(pairs, steps, D)``: great-circle interpolation, linear where the angle is ~0 or ~pi."""
    dot = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)
    omega = torch.arccos(dot.clamp(-1, 1))[:, None]
    sin = torch.sin(omega)
    wa = torch.sin((1 - t)[None] * omega) / sin
    wb = torch.sin(t[None] * omega) / sin
    flat = sin.abs() < 1e-6
    wa = torch.where(flat, (1 - t)[None], wa)
    wb = torch.where(flat, t[None].expand_as(wb), wb)
    return wa[..., None] * a[:, None] + wb[..., None] * b[:, None]


def attribute_direction(toward: Latents, away: Latents, toward_name: str = "", away_name: str = "") -> Direction:
    """``mean(toward) - mean(away)`` latent by latent (Glow's attribute vectors)."""
    _same_flow(toward, away, "away latents", "attribute direction", against="the toward group's spec")
    if len(toward) == 0 or len(away) == 0:
        raise FlowSpecError("an attribute direction needs at least one example in each group")
    vs = [(zt.double().mean(0, keepdim=True) - za.double().mean(0, keepdim=True)).to(zt.dtype)
          for zt, za in zip(toward.zs, away.zs)]
    return Direction(vs, toward.spec_name, toward.fingerprint, toward_name, away_name, (len(toward), len(away)))


def manipulate(latents: Latents, direction: Direction, strengths: Iterable[float]) -> Latents:
    """``z + s d`` for every example and strength: ``len(latents) * len(strengths)`` examples,
    one example's strengths after another."""
    strengths = [float(s) for s in strengths]
    if not strengths:
        raise FlowSpecError("manipulate needs at least one strength")
    _same_flow(latents, direction, "a direction", "manipulate", against="the latents' spec")
    zs = []
    for z, v in zip(latents.zs, direction.vs):
        v = v.to(device=z.device, dtype=z.dtype)
        moved = torch.stack([z + s * v for s in strengths], dim=1)
        zs.append(moved.reshape(len(latents) * len(strengths), *z.shape[1:]))
    return Latents(zs, latents.spec_name, latents.fingerprint)
