"""Figures with matplotlib (the ``plot`` extra): ``flowspec plot`` draws each run's curves,
``plot-density`` a titled panel per class with axes and a colour bar, sample and latent grids a
title and labels. The Figure objects are checked (axes, labels, lines, panels), not only the file;
without matplotlib every figure is one line naming the extra, and the plain PNGs still work."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.data import load_data
from flowspec.errors import FlowSpecError
from flowspec.train.config import TrainingConfig
from flowspec.train.runner import train

pytest.importorskip("matplotlib")

runner = CliRunner()

CONDITIONAL = """\
name: tiny-cond
input: {shape: [1, 8, 8], levels: 17}
condition: {kind: class, classes: 10, embed: 4}
levels: 2
steps: 1
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""

MOONS = """\
name: tiny-moons
input: {shape: [2], data: continuous}
condition: {kind: class, classes: 2, embed: 2}
prior: standard
layers:
  - actnorm
  - {kind: maf, hidden: 8, depth: 1}
training: {batch_size: 200, steps: 6, eval_every: 6, checkpoint_every: 6, sample_every: 6, lr: 0.01}
"""


def ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short digits runs (20 steps, lr 3e-3 and 1e-3) and a conditional one."""
    folder = tmp_path_factory.mktemp("runs")
    data = load_data("digits", None, (1, 8, 8), 17, classes=10).take(256, 64)
    spec = flowspec.loads_spec(CONDITIONAL.replace("name: tiny-cond", "name: tiny").replace(
        "condition: {kind: class, classes: 10, embed: 4}\n", ""))
    for name, lr in (("fast", 3e-3), ("slow", 1e-3)):
        config = TrainingConfig(steps=20, batch_size=16, lr=lr, warmup=5, eval_every=10, checkpoint_every=20,
                                sample_every=1000, samples=4, device="cpu")
        train(spec, data, config, folder / name, progress=False, log=lambda line: None)
    config = TrainingConfig(steps=2, batch_size=16, eval_every=1000, sample_every=1000, samples=4, device="cpu")
    train(flowspec.loads_spec(CONDITIONAL), data, config, folder / "cond", progress=False, log=lambda line: None)
    return folder


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moons")
    (folder / "moons.yaml").write_text(MOONS)
    ok("train", folder / "moons.yaml", "--data", "moons", "--out", folder / "run", "--no-progress")
    return folder / "run"


def test_training_curves_overlay_each_run_on_three_labelled_panels(runs, tmp_path):
    from flowspec.plot.curves import read_run, training_figure

    curves = [read_run(runs / "fast"), read_run(runs / "slow" / "last.pt", "lr 1e-3")]
    assert curves[0].steps == [10, 20] and curves[0].test_steps == [10, 20] and curves[1].label == "lr 1e-3"
    figure = training_figure(curves, title="two runs")
    loss, rate, norm = figure.axes
    assert (loss.get_xlabel(), loss.get_ylabel()) == ("step", "bits/dim")
    assert (rate.get_ylabel(), norm.get_ylabel(), norm.get_yscale()) == ("learning rate", "gradient norm", "log")
    assert len(loss.get_lines()) == 4 and len(rate.get_lines()) == 2 and len(norm.get_lines()) == 2  # train + test per run
    assert [text.get_text() for text in loss.get_legend().get_texts()] == [
        "fast train (smoothed)", "fast test", "lr 1e-3 train (smoothed)", "lr 1e-3 test"]
    learning_rates = list(rate.get_lines()[0].get_ydata())
    assert learning_rates == curves[0].lr == [3e-3, 3e-3]  # past the warm-up, no decay
    assert figure.get_suptitle() == "two runs"
    out = ok("plot", runs / "fast", runs / "slow", "--labels", "a,b", "-o", tmp_path / "curves.png").stdout
    assert "2 run(s)" in out and Image.open(tmp_path / "curves.png").size[0] > 600


def test_curves_of_a_continuous_run_are_in_nats(moons):
    from flowspec.plot.curves import read_run, training_figure

    assert training_figure([read_run(moons)]).axes[0].get_ylabel() == "nats/dim"


def test_density_has_a_titled_panel_per_class_axes_points_and_a_colour_bar(moons, tmp_path):
    from flowspec.plot.density import density_figure

    model = flowspec.load_model(moons / "last.pt")
    points = np.array([[0.0, 0.0], [1.0, 0.5], [-1.0, 0.2]])
    figure = density_figure(model, points, np.array([0, 1, 1]), size=24, title="moons")
    panels, colour_bar = figure.axes[:2], figure.axes[2]
    assert len(figure.axes) == 3  # two panels, one colour bar
    assert [ax.get_title() for ax in panels] == ["class 0", "class 1"]
    assert [ax.get_xlabel() for ax in panels] == ["x0", "x0"] and panels[0].get_ylabel() == "x1"
    assert colour_bar.get_ylabel() == "p(x | c)"
    assert [len(ax.collections[0].get_offsets()) for ax in panels] == [1, 2]  # each class's own points
    assert [len(ax.get_images()) for ax in panels] == [1, 1] and panels[0].get_images()[0].get_array().shape == (24, 24)
    ok("plot-density", moons / "last.pt", "-o", tmp_path / "density.png", "--size", "24", "--title", "moons")
    assert Image.open(tmp_path / "density.png").size[0] > 400


def test_grids_gain_a_title_and_class_labels(runs, tmp_path):
    from flowspec.plot.grids import sample_figure

    figure = sample_figure(runs / "cond" / "last.pt", per_class=3, title="per class", labels=True)
    (ax,) = figure.axes
    assert ax.get_title() == "per class" and ax.get_ylabel() == "class"
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(k) for k in range(10)]
    assert ax.get_images()[0].get_array().shape == (10 * 33 + 1, 3 * 33 + 1)  # the plain grid's pixels
    ok("sample", runs / "cond" / "last.pt", "--per-class", 3, "--labels", "-o", tmp_path / "s.png")
    result = runner.invoke(app, ["sample", str(runs / "fast" / "last.pt"), "--labels", "-o", str(tmp_path / "u.png")])
    assert result.exit_code == 2 and "not class-conditional" in result.output


def test_latent_grids_label_their_columns(runs, tmp_path, monkeypatch):
    from flowspec.plot import grids

    made = []
    original = grids.grid_figure
    monkeypatch.setattr(grids, "grid_figure", lambda *a, **k: made.append(original(*a, **k)) or made[-1])
    ok("manipulate", runs / "fast" / "last.pt", "--index", "0,1", "--toward", 8, "--away", 3, "--strengths", "-1,0,1",
       "--labels", "--title", "toward 8", "-o", tmp_path / "m.png")
    ok("interpolate", runs / "fast" / "last.pt", 0, 1, "--steps", 3, "--labels", "-o", tmp_path / "i.svg")
    manipulate, interpolate = (figure.axes[0] for figure in made)
    assert manipulate.get_title() == "toward 8" and manipulate.get_xlabel() == "strength"
    assert [t.get_text() for t in manipulate.get_xticklabels()] == ["-1", "0", "1"]
    assert [t.get_text() for t in interpolate.get_xticklabels()] == ["0", "0.5", "1"]
    assert (tmp_path / "i.svg").read_text().lstrip().startswith("<?xml")


def test_without_matplotlib_figures_are_one_line_and_plain_grids_still_work(runs, moons, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    for args in (["plot", runs / "fast"], ["plot-density", moons / "last.pt"],
                 ["sample", runs / "cond" / "last.pt", "--per-class", 2, "--labels"],
                 ["interpolate", runs / "fast" / "last.pt", 0, 1, "--title", "t"]):
        result = runner.invoke(app, [str(a) for a in args] + ["-o", str(tmp_path / "x.png")])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == ("error: this figure needs matplotlib, which is not installed: "
                                         "pip install 'flowspec[plot]'"), result.stderr
    ok("sample", runs / "cond" / "last.pt", "--per-class", 2, "-o", tmp_path / "plain.png")
    assert Image.open(tmp_path / "plain.png").size == (2 * 33 + 1, 10 * 33 + 1)
    with pytest.raises(FlowSpecError, match="flowspec\\[plot\\]"):
        from flowspec.plot import require_matplotlib

        require_matplotlib()
