"""ONNX export of a flow's two directions (the optional extra ``flowspec[onnx]``: onnx, onnxscript,
onnxruntime), for runtimes without PyTorch.

``density.onnx``: ``x -> (*zs, logdet, log_prob)`` in model space, as ``density.pt2``;
``sample.onnx``: ``(temperature, *eps) -> x``, ``eps`` standard normal draws of the latent shapes;
a conditional model takes ``c`` after ``x`` / ``temperature`` (int64 labels ``(batch,)`` or float
contexts ``(batch, dim)``). The batch dimension is dynamic.

The model is first folded for inference (:func:`flowspec.compile.fold.fold_for_inference`: each
actnorm + invertible 1x1 conv becomes one conv whose matrix, inverse and log-det are computed once,
in float64), so no matrix inverse or determinant is left for ONNX, which has neither. ONNX has no
log-sigmoid either and the exporter's ``log(sigmoid(x))`` underflows to ``-inf`` for very negative
``x``; it is exported as ``-softplus(-x)``, which is exact there. Each program is then run by
onnxruntime against the unfolded PyTorch model on fresh inputs at another batch size (the
samples of the model, so the density is checked on the model's own data range); the largest
differences are returned.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from flowspec.errors import FlowSpecError
from flowspec.files import make_folder, refuse_link, save_onnx

ONNX_HINT = "pip install 'flowspec[onnx]'"
OPSET = 18


@dataclass
class OnnxExport:
    """The written programs and, per direction, the largest absolute difference from PyTorch and
    that difference over the largest absolute reference value (0 when not checked)."""

    paths: dict[str, Path]
    max_abs: dict[str, float] = field(default_factory=dict)
    max_relative: dict[str, float] = field(default_factory=dict)


def _require() -> None:
    missing = []
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise FlowSpecError(f"ONNX export needs {' and '.join(missing)}, not installed: {ONNX_HINT}")


def _log_sigmoid(x):
    from onnxscript import opset18 as op

    return op.Neg(op.Softplus(op.Neg(x)))


def export_onnx(model, folder: str | Path, batch: int = 4, check: bool = True, tolerance: float = 1e-4) -> OnnxExport:
    """Write ``density.onnx`` and ``sample.onnx`` of a flow ``model`` into ``folder``; with ``check``
    run both in onnxruntime against ``model`` and raise if a relative difference exceeds ``tolerance``."""
    from flowspec.compile.condition import random_condition
    from flowspec.compile.export import _ConditionalDensity, _ConditionalSampler, _Density, _Sampler
    from flowspec.compile.fold import fold_for_inference

    _require()
    if getattr(model.spec, "model", "flow") != "flow":
        raise FlowSpecError("ONNX export covers flow models (a VAE has no exact density); export its weights "
                            "with --format safetensors")
    folder = make_folder(folder)
    model = model.eval()
    folded = fold_for_inference(model)
    dtype = next(model.parameters()).dtype
    conditional = getattr(model, "condition_config", None) is not None

    def inputs(n: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        eps = tuple(torch.randn(n, *shape, generator=generator, dtype=dtype) for shape in model.latent_shapes)
        temperature = torch.tensor(0.7, dtype=dtype)
        c = None
        if conditional:
            c = random_condition(model.condition_config, n, generator)
            c = c if c.dtype == torch.long else c.to(dtype)
        with torch.no_grad():
            x = (model.generate(list(eps), temperature) if c is None else model.generate(list(eps), temperature, c))
        return x, eps, temperature, c

    x, eps, temperature, c = inputs(batch, 0)
    dim = torch.export.Dim("batch", min=1, max=1 << 20)
    latent_names = [f"z{i}" for i in range(len(eps))]
    eps_names = [f"eps{i}" for i in range(len(eps))]
    if conditional:
        density, density_args = _ConditionalDensity(folded).eval(), (x, c)
        sampler, sampler_args = _ConditionalSampler(folded).eval(), (temperature, c, *eps)
        density_shapes = {"x": {0: dim}, "c": {0: dim}}
        sampler_shapes = {"temperature": None, "c": {0: dim}, "eps": tuple({0: dim} for _ in eps)}
        density_names, sampler_names = ["x", "c"], ["temperature", "c", *eps_names]
    else:
        density, density_args = _Density(folded).eval(), (x,)
        sampler, sampler_args = _Sampler(folded).eval(), (temperature, *eps)
        density_shapes = {"x": {0: dim}}
        sampler_shapes = {"temperature": None, "eps": tuple({0: dim} for _ in eps)}
        density_names, sampler_names = ["x"], ["temperature", *eps_names]
    paths = {"density": folder / "density.onnx", "sample": folder / "sample.onnx"}
    for path in paths.values():  # before the minutes of exporting, not after
        refuse_link(path)
    with torch.no_grad():
        for what, module, args, shapes, names, outputs in (
                ("density", density, density_args, density_shapes, density_names, [*latent_names, "logdet", "log_prob"]),
                ("sample", sampler, sampler_args, sampler_shapes, sampler_names, ["x"])):
            save_onnx(_export_one(what, module, args, shapes, names, outputs), paths[what])
    result = OnnxExport(paths)
    if check:
        _check(result, model, inputs(batch + 3, 1), conditional, tolerance)
    return result


def _export_one(what: str, module, args, shapes, names, outputs):
    """``torch.onnx.export`` (the dynamo exporter) of one direction; any failure is one line."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")  # our one Dim, by design
            warnings.filterwarnings("ignore", message=".*treespec, LeafSpec", category=FutureWarning)  # torch's own
            return torch.onnx.export(module, args, dynamo=True, dynamic_shapes=shapes, opset_version=OPSET,
                                     input_names=names, output_names=outputs, verbose=False,
                                     custom_translation_table={torch.ops.aten.log_sigmoid.default: _log_sigmoid})
    except Exception as error:  # the exporter raises many types; say which in one line
        first = str(error).strip().splitlines()
        raise FlowSpecError(f"ONNX export of the {what} direction failed: "
                            f"{type(error).__name__}: {first[0] if first else ''}") from None


def _check(result: OnnxExport, model, drawn, conditional: bool, tolerance: float) -> None:
    """Run both programs in onnxruntime on fresh inputs and compare with the (unfolded) model."""
    from flowspec.compile.export import _ConditionalDensity, _ConditionalSampler, _Density, _Sampler

    try:
        import onnxruntime
    except ImportError:
        raise FlowSpecError(f"checking the ONNX programs needs onnxruntime, not installed: {ONNX_HINT} "
                            f"(or pass --no-check)") from None
    x, eps, temperature, c = drawn
    with torch.no_grad():
        if conditional:
            cases = {"density": ((x, c), _ConditionalDensity(model)(x, c)),
                     "sample": ((temperature, c, *eps), _ConditionalSampler(model)(temperature, c, *eps))}
        else:
            cases = {"density": ((x,), _Density(model)(x)), "sample": ((temperature, *eps), _Sampler(model)(temperature, *eps))}
    for what, (args, expected) in cases.items():
        session = onnxruntime.InferenceSession(str(result.paths[what]), providers=["CPUExecutionProvider"])
        feeds = {spec.name: value.numpy() for spec, value in zip(session.get_inputs(), args)}
        got = session.run(None, feeds)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        worst_abs, worst_rel = 0.0, 0.0
        for a, b in zip(got, expected):
            difference = float((torch.from_numpy(a) - b).abs().max())
            worst_abs = max(worst_abs, difference)
            worst_rel = max(worst_rel, difference / max(float(b.abs().max()), 1e-30))
        result.max_abs[what], result.max_relative[what] = worst_abs, worst_rel
        if not worst_rel <= tolerance:
            raise FlowSpecError(f"the ONNX {what} program differs from the PyTorch model by {worst_abs:.3g} "
                                f"({worst_rel:.3g} relative, above {tolerance:g})")
