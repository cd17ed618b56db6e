"""The shipped paper specs: the parameter count each states in its comments is what flowspec's
report counts, Flow++'s is within 1% of its official code's 31,443,440, and each carries a
training section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowspec.report import report_spec
from flowspec.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
STATED = re.compile(r"flowspec report: ([\d,]+) parameters")
PAPER_SPECS = ["flowpp", "flowpp-digits", "realnvp", "glow", "glow-celeba", "nice", "glow-digits-spline",
               "jet-imagenet64", "jet-digits"]
FLOWPP_OFFICIAL = 31_443_440  # github.com/aravindsrinivas/flowpp, flows/run_cifar.py


def jet_official_params(depth=32, block_depth=2, width=512, mlp=2048, tokens=256, values=48) -> int:
    """Trainable parameters of big_vision's Jet (models/proj/jet/jet.py with models/vit.py), counted
    from its code: per coupling the DNN's init_proj (values/2 -> width, with bias), posemb
    (tokens x width), block_depth encoder blocks (two layer norms; q, k, v, out projections with
    biases; the MLP width -> mlp -> width), encoder_norm, final_proj (width -> values, with bias)."""
    block = 2 * 2 * width + 4 * (width * width + width) + (width * mlp + mlp + mlp * width + width)
    coupling = ((values // 2) * width + width + tokens * width + block_depth * block + 2 * width
                + width * values + values)
    return depth * coupling


def _stated(name: str) -> int:
    found = STATED.findall((ROOT / "specs" / f"{name}.yaml").read_text())
    assert len(found) == 1, f"specs/{name}.yaml states its parameter count once ('flowspec report: N parameters')"
    return int(found[0].replace(",", ""))


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_stated_parameter_count_is_the_reports(name):
    spec = load_spec(ROOT / "specs" / f"{name}.yaml")
    assert report_spec(spec, "a100", 1).params == _stated(name)
    assert spec.training is not None, f"specs/{name}.yaml has no training: section"


def test_flowpp_is_within_1_percent_of_the_official_count():
    params = report_spec(load_spec(ROOT / "specs" / "flowpp.yaml"), "a100", 1).params
    assert abs(params - FLOWPP_OFFICIAL) / FLOWPP_OFFICIAL < 0.01, params


def test_jet_imagenet64_is_within_1_percent_of_the_official_count():
    assert jet_official_params() == 207_177_216  # the figure specs/jet-imagenet64.yaml derives by hand
    params = report_spec(load_spec(ROOT / "specs" / "jet-imagenet64.yaml"), "a100", 1).params
    assert abs(params - jet_official_params()) / jet_official_params() < 0.01, params


def test_glow_celeba_reads_5_bit_data():
    spec = load_spec(ROOT / "specs" / "glow-celeba.yaml")
    assert (spec.input.bits, spec.input.levels, spec.levels, spec.steps) == (5, 32, 6, 32)
