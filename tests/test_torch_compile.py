"""``training.compile`` (:func:`flowspec.core.speed.compile_model`): on narrow, shallow copies of the
shipped specs, the loss (training and evaluation) and sampling compile as one graph each
(``fullgraph=True``), training steps do not recompile, and compiled and eager agree: the loss to
1e-5 relative, step after step, and samples from the same seed.

The default run traces with dynamo and AOTAutograd (``backend="aot_eager"``: every graph break and
recompilation shows, without generating kernels); the slow run compiles with inductor.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import flowspec
from flowspec.compile.check import narrow_spec
from flowspec.core.speed import compile_model, is_compiled
from flowspec.family import family_of
from flowspec.hvae.check import narrow_hvae_spec
from flowspec.vae.check import narrow_vae_spec

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (ROOT / "specs").glob("*.yaml"))
LEAN = ["glow-digits.yaml"]  # the default run; the rest are slow


def narrow_copy(name: str):
    """The spec with one step per level (two where one step leaves entries unmixed, which the graph
    refuses), conditioner widths at most 8, the smallest input it takes."""
    spec = flowspec.load_spec(ROOT / "specs" / name)
    if getattr(spec, "model", "flow") == "vae":
        return narrow_vae_spec(spec, 8)
    if getattr(spec, "model", "flow") == "hvae":
        return narrow_hvae_spec(spec, 8)
    if spec.steps is None:
        return narrow_spec(spec, 8)
    try:
        return narrow_spec(spec.model_copy(update={"steps": 1}), 8)
    except flowspec.ShapeError:
        return narrow_spec(spec.model_copy(update={"steps": 2}), 8)


def twins(name: str, batch: int = 4):
    """An eager model and an identical one to compile, initialized on the same batch ``(x, c)``."""
    spec = narrow_copy(name)
    family = family_of(spec)
    graph = family.build_graph(spec)
    torch.manual_seed(0)
    eager = family.compile(graph)
    shape = (batch, *eager.input_shape)
    x = (torch.randn(shape) if getattr(spec.input, "continuous", False)
         else torch.randint(0, spec.input.levels, shape).float())
    if getattr(eager, "columns", None) is not None:  # typed columns: values in each column's domain
        x = eager.to_data_space(x)
    condition = getattr(spec, "condition", None)
    c = None if condition is None else (torch.arange(batch) % condition.classes if condition.kind == "class"
                                        else torch.randn(batch, condition.dim))
    eager.initialize(x, condition=c)
    fast = family.compile(graph)
    fast.load_state_dict(eager.state_dict())
    return eager, fast, x, c


def graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def check_compiled_matches_eager(name: str, backend: str) -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager, fast, x, c = twins(name)
    compile_model(fast, backend=backend)
    assert is_compiled(fast)
    optimizers = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in (eager, fast)]
    compiled_after_first = None
    for step in range(3):  # training: the same dequantization noise in both, then the same update
        losses = []
        for model, optimizer in zip((eager, fast), optimizers):
            model.train()
            torch.manual_seed(100 + step)
            loss = model.loss_per_dim(x, condition=c).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=1e-5), f"step {step}: eager {losses[0]}, compiled {losses[1]}"
        compiled_after_first = compiled_after_first or graphs()
    assert graphs() == compiled_after_first, "a training step recompiled"
    assert not counters["graph_break"], dict(counters["graph_break"])
    with torch.no_grad():  # evaluation
        values = []
        for model in (eager, fast):
            model.eval()
            torch.manual_seed(7)
            values.append(model.loss_per_dim(x, condition=c).mean().item())
        assert values[1] == pytest.approx(values[0], rel=1e-5)
        samples = [model.sample(4, condition=c, temperature=0.7, generator=torch.Generator().manual_seed(3))
                   for model in (eager, fast)]
    torch.testing.assert_close(samples[1], samples[0], rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()


@pytest.mark.parametrize("name", LEAN)
def test_compiled_graphs_match_eager_without_breaks_or_recompiles(name):
    check_compiled_matches_eager(name, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SHIPPED if n not in LEAN])
def test_every_shipped_spec_compiles_without_breaks_or_recompiles(name):
    check_compiled_matches_eager(name, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_inductor_compiled_loss_equals_eager(name, monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "fallback_random", True)  # the same random numbers as eager
    check_compiled_matches_eager(name, "inductor")


def test_compiling_needs_an_initialized_model():
    spec = narrow_copy("glow-digits.yaml")
    model = flowspec.compile(spec)
    with pytest.raises(flowspec.FlowSpecError, match="not initialized"):
        compile_model(model)


TINY_MOONS = """
name: tiny-moons
input: {shape: [2], data: continuous}
condition: {kind: class, classes: 2, embed: 2}
prior: standard
layers:
  - actnorm
  - {kind: maf, hidden: 8, depth: 1}
training: {batch_size: 200, steps: 6, eval_every: 6, checkpoint_every: 6, sample_every: 6, lr: 0.01}
"""


@pytest.mark.slow
def test_train_and_sample_with_compile_match_eager(tmp_path):
    """``flowspec train --compile`` and ``sample --compile`` (inductor): the same losses and samples."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from flowspec.cli import app

    spec = tmp_path / "moons.yaml"
    spec.write_text(TINY_MOONS)
    runner = CliRunner()
    losses, samples = {}, {}
    for flag in ("--no-compile", "--compile"):
        out = tmp_path / flag.strip("-")
        result = runner.invoke(app, ["train", str(spec), "--data", "moons", "--out", str(out), "--no-progress", flag])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses[flag] = [row["loss"] for row in rows if "loss" in row]
        sample_flags = ["--compile"] if flag == "--compile" else []
        result = runner.invoke(app, ["sample", str(out / "last.pt"), "-n", "8", "-o", str(out / "s.npy"), *sample_flags])
        assert result.exit_code == 0, result.output
        samples[flag] = np.load(out / "s.npy")
    assert losses["--compile"] == pytest.approx(losses["--no-compile"], rel=1e-5)
    np.testing.assert_allclose(samples["--compile"], samples["--no-compile"], rtol=1e-4, atol=1e-4)
