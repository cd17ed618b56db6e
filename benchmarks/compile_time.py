"""Benchmark: how long ``training.compile`` takes to compile a spec's training step, and where.

    python benchmarks/compile_time.py specs/flowpp-digits.yaml                 # inductor, batch 4
    python benchmarks/compile_time.py specs/realnvp.yaml --backend aot_eager   # tracing only, no kernels
    python benchmarks/compile_time.py specs/glow.yaml --narrow                 # the test suite's narrow copy

Builds the spec's model (or its narrow copy: one step per level, or two where one would leave
entries unmixed, conditioner widths 8), initializes
it on one batch, compiles it as ``training.compile`` does (:func:`flowspec.core.speed.compile_model`,
``fullgraph=True``), and times the first training call's forward (dynamo, AOTAutograd and the
backend's forward graph) and backward (the backward graph) separately, then two more steps, which
must not compile anything. Prints the unique graphs and breaks dynamo counted, the compiled loss
beside eager's on the same batch and seed, and torch's own compile-time breakdown (tracing,
AOTAutograd, code generation, kernel compilation), which says where the seconds went.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--backend", default="inductor", help="inductor (default), aot_eager, eager")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--narrow", action="store_true", help="the narrow copy the compile tests use")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import flowspec
    from flowspec.compile.check import narrow_spec
    from flowspec.core.speed import compile_model
    from flowspec.family import family_of
    from torch._dynamo.utils import compile_times, counters

    spec = flowspec.load_spec(Path(args.spec))
    if args.narrow and spec.steps is None:
        spec = narrow_spec(spec, 8)
    elif args.narrow:  # one step per level, two where one leaves entries unmixed (the graph refuses that)
        try:
            spec = narrow_spec(spec.model_copy(update={"steps": 1}), 8)
        except flowspec.ShapeError:
            spec = narrow_spec(spec.model_copy(update={"steps": 2}), 8)
    family = family_of(spec)
    graph = family.build_graph(spec)
    torch.manual_seed(0)
    model = family.compile(graph)
    shape = (args.batch, *model.input_shape)
    x = torch.randn(shape) if getattr(spec.input, "continuous", False) else \
        torch.randint(0, spec.input.levels, shape).float()
    if getattr(model, "columns", None) is not None:
        x = model.to_data_space(x)
    model.initialize(x)
    eager = family.compile(graph)
    eager.load_state_dict(model.state_dict())
    compile_model(model, backend=args.backend)
    model.train()
    eager.train()

    start = time.perf_counter()
    torch.manual_seed(1)
    loss = model.loss_per_dim(x).mean()
    forward = time.perf_counter() - start
    start = time.perf_counter()
    loss.backward()
    backward = time.perf_counter() - start
    torch.manual_seed(1)
    reference = eager.loss_per_dim(x).mean()
    graphs = int(counters["stats"]["unique_graphs"])
    steps = []
    for step in range(2):
        torch.manual_seed(2 + step)
        start = time.perf_counter()
        model.loss_per_dim(x).mean().backward()
        steps.append(time.perf_counter() - start)
    print(f"{args.spec}{' (narrow)' if args.narrow else ''}, backend {args.backend}, batch {args.batch}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"first step: forward {forward:.1f} s, backward {backward:.1f} s (compilation included)")
    print(f"later steps: {', '.join(f'{s:.3f} s' for s in steps)}; unique graphs {graphs} -> "
          f"{int(counters['stats']['unique_graphs'])} (no new graph: {graphs == int(counters['stats']['unique_graphs'])}); "
          f"graph breaks {sum(counters['graph_break'].values())}")
    print(f"loss: compiled {loss.item():.6f}, eager {reference.item():.6f} (dropout, if any, draws differently "
          "under inductor)")
    print(compile_times(repr="str", aggregate=True))


if __name__ == "__main__":
    main()
