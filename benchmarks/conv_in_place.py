"""Why flowspec's convolutions run slower in place than in the conv ceiling's replay, call by call:
``python benchmarks/conv_in_place.py`` (options: ``--help``).

For ``specs/glow-bench.yaml`` (batch 16, one thread, float32) it runs a training step (forward,
backward, fused Adam) and a sampling call, and prints for every distinct convolution call
(:func:`flowspec.bench.ceiling.conv_breakdown`): the layouts its tensors had in place (``C``
NCHW, ``L`` channels_last, ``S`` another strided view, ``-`` not 4-D), how often one step runs it,
and its time in place, replayed on the same operands (as the ceiling replays it, operands hot in
cache), replayed cycling through 16 sets of operands, and replayed with the caches flushed before
each call (a 256 MiB buffer written); then the sums. Where the in-place time lies between the hot
and the cold replay in the same layouts, the gap to the ceiling is the replay's operands staying in
cache, not a layout.
Wall clock: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from flowspec.bench.ceiling import conv_breakdown
from flowspec.bench.measure import training_step, with_steps
from flowspec.core.speed import keep_freed_memory
from flowspec.spec import load_spec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "glow-bench.yaml"


def print_table(title: str, rows) -> None:
    print(f"{title}: microseconds per convolution call: in place / replay (the ceiling's) / replay on 16 "
          f"operand sets / replay with cold caches; in place over the replay, over the cold replay")
    for row in rows:
        shapes = " ".join("x".join(map(str, shape)) for shape in row.shapes[:2])
        print(f"  {row.op:21} {shapes:28} {row.layouts:4} x{row.count:<3} {row.in_place * 1e6:8.0f} "
              f"{row.replay * 1e6:8.0f} {row.replay_fresh * 1e6:8.0f} {row.replay_cold * 1e6:8.0f}   {row.in_place / row.replay:5.2f}x "
              f"{row.in_place / row.replay_cold:5.2f}x")
    what = ("in_place", "replay", "replay_fresh", "replay_cold")
    total = [sum(row.count * getattr(row, name) for row in rows) for name in what]
    print(f"  sum per {title}: in place {total[0] * 1e3:.1f} ms; replay {total[1] * 1e3:.1f} ms "
          f"({total[1] / total[0]:.0%} of in place), on 16 operand sets {total[2] * 1e3:.1f} ms "
          f"({total[2] / total[0]:.0%}), with cold caches {total[3] * 1e3:.1f} ms ({total[3] / total[0]:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(SPEC))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    spec = load_spec(args.spec)
    torch.manual_seed(0)
    model = with_steps(spec, invertible=False).train()
    data = torch.randint(0, model.levels, (args.batch, *model.input_shape)).float()
    model.initialize(data)
    step = training_step(lambda x: model.bits_per_dim(x).mean(), model.parameters(), data)
    print_table("training step", conv_breakdown(step, calls=args.calls))
    sampler = with_steps(spec).eval()
    sampler.load_state_dict(model.state_dict())
    with torch.no_grad():
        print_table("sampling call", conv_breakdown(lambda: sampler.sample(args.batch), calls=args.calls))


if __name__ == "__main__":
    main()
