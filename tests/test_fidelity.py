"""docs/fidelity.md's parameter counts: flowspec's reports of the paper specs beside the official
ones, with every parameter of each gap accounted for."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowspec import build_graph, load_spec
from flowspec.report.costs import count_params

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "fidelity.md").read_text(encoding="utf-8")


def _params(spec: str) -> int:
    return count_params(build_graph(load_spec(ROOT / "specs" / f"{spec}.yaml")))


def glow_variables(edge_bias: bool, width: int = 512, depth: int = 32, channels=(12, 24, 48)) -> dict[str, int]:
    """The variables openai/glow's model.py creates for CIFAR-10 (--n_level 3 --depth 32
    --flow_coupling 1 --learntop), counted from their shapes: per step actnorm (b, logs), the 1x1
    conv W, and f (l_1: 3x3 conv + actnorm, l_2: 1x1 conv + actnorm, l_last: zero 3x3 conv with b
    and logs); per split, split2d_prior's zero 3x3 conv (b, logs); the top prior's zero conv of a
    zero tensor of 2 n_z channels. ``edge_bias`` adds tfops.py's border channel to every 3x3 input."""
    edge = 1 if edge_bias else 0
    steps = splits = 0
    for level, c in enumerate(channels):
        step = 2 * c + c * c
        step += 9 * (c // 2 + edge) * width + 2 * width  # l_1 (no bias: actnorm)
        step += width * width + 2 * width  # l_2
        step += 9 * (width + edge) * c + 2 * c  # l_last: W, b, logs
        steps += depth * step
        if level < len(channels) - 1:
            splits += 9 * (c // 2 + edge) * c + 2 * c
    top = channels[-1]
    return {"steps": steps, "splits": splits, "top_conv": 9 * (2 * top + edge) * 2 * top, "top_bias_logs": 4 * top}


def test_glow_gap_is_the_edge_channel_the_top_conv_and_the_split_logs():
    official = glow_variables(edge_bias=True)
    assert sum(official.values()) == 44_603_604
    without_edge = glow_variables(edge_bias=False)
    split_logs = 12 + 24  # one log-scale per output channel of the two split priors' zero convs
    # flowspec: the same steps and splits without the border channel and the split log-scales; a
    # per-channel top prior (mean, log-std: 2 x 48) instead of a zero conv's bias and log-scale
    # over 96 channels, whose weights see only zeros
    top_prior = 2 * 48
    expected = without_edge["steps"] + without_edge["splits"] - split_logs + top_prior
    assert _params("glow") == expected


@pytest.mark.parametrize("spec, count", [("realnvp", "19,631,548"), ("glow", "44,052,780"),
                                         ("flowpp", "31,681,952"), ("nice", "19,158,352")])
def test_the_table_quotes_the_reports(spec, count):
    assert f"{_params(spec):,}" == count
    assert f"| `{spec}.yaml` | {count} |" in DOC


def test_nice_matches_the_paper_count():
    mlp = 392 * 1000 + 1000 + 4 * (1000 * 1000 + 1000) + 1000 * 392 + 392
    assert _params("nice") == 4 * mlp + 784


def test_realnvp_gap_is_the_ports_per_channel_rescale():
    """The port's couplings rescale tanh(s) by a weight-normed vector (g and v: 2C each); flowspec's
    by one scalar (the TF code's rescaling_scale). 3 checkerboard couplings see 3 channels, 3 channel
    couplings 6 of 12, the last 4 checkerboard couplings 6."""
    port_rescale = 3 * 2 * 3 + 3 * 2 * 6 + 4 * 2 * 6
    assert _params("realnvp") == 19_631_640 - port_rescale + 10


def test_flowpp_eval_protocol_4096_samples_runs_in_bounded_passes():
    """The paper's 3.08 is a 4,096-sample importance-weighted bound per test image
    (flow_training.py evaluate); flowspec's -k 4096 draws them in passes of at most 4,096 examples."""
    import math

    import torch

    import flowspec

    spec = flowspec.loads_spec("""
input: {shape: [1, 4, 4], levels: 17}
dequantization: {kind: uniform}
prior: standard
layers:
  - {kind: coupling, mask: checkerboard, conditioner: {kind: conv, hidden: 4, depth: 1}}
""")
    model = flowspec.compile(spec).eval()
    sizes = []
    elbo = model.elbo

    def counted(x, *args, **kwargs):
        sizes.append(x.shape[0])
        return elbo(x, *args, **kwargs)

    model.elbo = counted
    x = torch.randint(0, 17, (3, 1, 4, 4)).float()
    torch.manual_seed(0)
    with torch.no_grad():
        weights = model.log_weights(x, 4096)
        bound = model.iw_log_likelihood(x, 4096)
    assert weights.shape == (3, 4096) and max(sizes) <= 4096 and sum(sizes) == 2 * 3 * 4096
    iw = torch.logsumexp(weights.double(), dim=1) - math.log(4096)
    assert torch.all(iw >= weights.double().mean(dim=1))  # Jensen: the k-draw bound tops the one-draw mean
    assert torch.all(torch.isfinite(bound))
    assert torch.allclose(bound.double(), iw, atol=0.05)  # another 4,096 draws: the same estimate within noise
