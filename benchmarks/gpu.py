"""GPU suite, one command: ``PYTHONPATH=. python3 benchmarks/gpu.py [--quick] [--out results/gpu]``.

For every shipped spec (``specs/*.yaml``), on one CUDA device:

* training-step throughput (one optimizer step on the spec's per-dim loss: forward, backward,
  fused Adam) and sampling throughput (``sample(batch)`` in eval mode), in float32 and under bf16
  autocast, eager and ``torch.compile``-d, with the peak memory of each
  (``torch.cuda.max_memory_allocated``);
* the cost report's predicted step and sampling times for the device (``flowspec report --device
  h200``: float32, tf32 and bfloat16 peaks) beside the measured ones;
* a ``torchrun`` DDP check with nccl when two or more devices exist (gradients all-reduced: the
  weights of both ranks agree after the steps), otherwise the line ``1 device: DDP skipped``.

Eager figures are of the spec as shipped, at its training batch (halved until the cost report says
it fits). Compiled is what ``training.compile: true`` runs (:func:`flowspec.core.speed.compile_model`:
the loss and sampling's ``generate``, each one graph, ``fullgraph=True``; a graph break is a failure
line). Compiling a 96-step Glow takes minutes, so compiled figures are of a shallow copy
(``steps`` per level at most ``--compile-steps``, 2 by default; 0 keeps the spec's depth), timed
against the same shallow copy in eager mode, so the ratio compares like with like. Compilation runs
in phases after all eager figures, float32 before bf16, while ``--budget`` seconds last; what did
not fit is reported as skipped. Every spec runs in its own ``try``: a failure (a compile error, out
of memory, the per-spec time cap) is one line and the suite goes on. Lines are flushed as they are
measured and ``--out`` files rewritten after every spec, so a timeout keeps what was measured.

Without CUDA it prints one line and exits 0. ``--device cpu`` runs the same code path on the CPU
(a dry run for development; use it with ``--specs`` of small specs). Needs torch, numpy, pydantic,
pyyaml and networkx; not the ``dot`` binary nor the graphviz package, and not an installed flowspec
(the repository root is put on ``sys.path``).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MIB = 2.0 ** 20
#: compiled first (the budget may run out before the rest): the benchmark shape, then the papers
COMPILE_FIRST = ["glow-bench.yaml", "glow.yaml", "realnvp.yaml", "flowpp.yaml", "glow-digits.yaml"]
#: the cost report's dtype for each measured precision (float32 matmuls/convs may use TF32 on CUDA,
#: depending on torch's backend flags, so the float32 row shows both predictions)
PREDICTED_DTYPES = {"float32": ("float32", "tf32"), "bf16": ("bfloat16",)}


class OverTime(BaseException):
    """A per-spec time cap ran out. A BaseException, so that no ``except Exception`` inside torch
    (dynamo falling back to eager on an internal error) swallows it."""


class time_cap:
    """``with time_cap(seconds):`` raises :class:`OverTime` in the block after ``seconds`` (SIGALRM)."""

    def __init__(self, seconds: float, what: str):
        self.seconds, self.what = seconds, what

    def _expired(self, signum, frame):
        raise OverTime(f"{self.what}: over its time cap of {self.seconds:.0f} s")

    def __enter__(self):
        self.previous = signal.signal(signal.SIGALRM, self._expired)
        signal.setitimer(signal.ITIMER_REAL, max(self.seconds, 0.01))
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)
        return False


def say(line: str) -> None:
    print(line, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int, seconds: float = 3.0) -> tuple[float, float]:
    """``(median seconds per call, peak bytes allocated)`` of ``fn`` after ``warmup`` calls; a slow
    ``fn`` gets fewer repeats (at least 3), about ``seconds`` in all."""
    tic = time.perf_counter()
    for _ in range(warmup):
        fn()
    sync(device)
    if warmup:
        per_call = (time.perf_counter() - tic) / warmup
        repeats = max(3, min(repeats, int(seconds / max(per_call, 1e-9))))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return statistics.median(times), float(peak)


def error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


# -- a spec's model, data and loss ---------------------------------------------------------------------
class Objective(torch.nn.Module):
    """The training loss of a model, a module of its own (what DDP wraps): mean bits/dim, or
    nats/dim for continuous data, given the conditions of a conditional flow."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.loss_per_dim(x, condition=c).float().mean()


def example_batch(spec, model, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random data of the spec's shape (integer levels, or normal values for continuous data) and
    conditions (labels in turn, or normal contexts)."""
    shape = (batch, *model.input_shape)
    if getattr(spec.input, "continuous", False):
        x = torch.randn(shape, device=device)
    else:
        x = torch.randint(0, spec.input.levels, shape, device=device).float()
    condition = getattr(spec, "condition", None)
    c = None
    if condition is not None:
        c = (torch.arange(batch, device=device) % condition.classes if condition.kind == "class"
             else torch.randn(batch, condition.dim, device=device))
    return x, c


def shallow(spec, steps: int):
    """The spec with at most ``steps`` steps per level (compact form), as it is otherwise."""
    if steps and getattr(spec, "steps", None) is not None and spec.steps > steps:
        return spec.model_copy(update={"steps": steps})
    return spec


class Subject:
    """One compiled spec on the device: model, optimizer, data, and the functions the suite times."""

    def __init__(self, spec, family, batch: int, device: torch.device, seed: int = 0):
        torch.manual_seed(seed)
        self.spec, self.batch, self.device = spec, batch, device
        self.graph = family.build_graph(spec)
        self.model = family.compile(self.graph).to(device)
        self.x, self.c = example_batch(spec, self.model, batch, device)
        with torch.no_grad():
            self.model.initialize(self.x, condition=self.c)
        self.objective = Objective(self.model)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=1e-5,
                                          **({"fused": True} if device.type == "cuda" else {}))

    def loss_fn(self, bf16: bool):
        objective, device = self.objective, self.device

        def loss(x, c):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return objective(x, c)
        return loss

    def train_step(self, loss):
        model, optimizer, x, c = self.model, self.optimizer, self.x, self.c

        def step():
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss(x, c).backward()
            optimizer.step()
        return step

    def sample_fn(self, bf16: bool):
        model, batch, c, device = self.model, self.batch, self.c, self.device

        def sample():
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return model.sample(batch, condition=c)
        return sample

    def sampler(self, fn):
        model = self.model

        def run():
            model.eval()
            return fn()
        return run


def dynamo_counts() -> tuple[int, int]:
    """``(graphs compiled, graph breaks)`` so far, from ``torch._dynamo``'s counters."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))


def break_reasons(limit: int = 3) -> list[str]:
    """The most frequent graph-break reasons so far (first line of each, shortened)."""
    from torch._dynamo.utils import counters

    ranked = sorted(counters["graph_break"].items(), key=lambda item: -item[1])[:limit]
    return [f"{count}x {reason.strip().splitlines()[0][:160]}" for reason, count in ranked]


# -- the suite -----------------------------------------------------------------------------------------
class Suite:
    def __init__(self, args, device: torch.device, profile):
        self.args, self.device, self.profile = args, device, profile
        self.results: list[dict] = []
        self.deadline = time.monotonic() + args.budget
        self.meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "torch": torch.__version__, "cuda": torch.version.cuda, "profile": profile.name,
                     "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                     "matmul_precision": torch.get_float32_matmul_precision(),
                     "cudnn_benchmark": torch.backends.cudnn.benchmark,
                     "device_count": torch.cuda.device_count() if device.type == "cuda" else 0,
                     "budget_s": args.budget, "compile_steps": args.compile_steps, "ddp": None}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def record(self, row: dict) -> None:
        self.results.append(row)
        self.write()

    def predicted(self, family, graph, batch: int, precision: str) -> dict:
        out = {}
        for dtype in PREDICTED_DTYPES[precision]:
            if dtype in self.profile.peak_flops:
                report = family.cost_report(graph, self.profile, batch, dtype)
                out[dtype] = {"train_ms": 1e3 * report.time_train_step, "sample_ms": 1e3 * report.time_sample,
                              "train_gib": report.train_bytes / 2 ** 30, "max_batch": report.max_train_batch}
        return out

    def fitting_batch(self, spec, family) -> int:
        """The spec's training batch (or ``--batch``), halved until the cost report says it fits."""
        batch = self.args.batch or getattr(getattr(spec, "training", None), "batch_size", 64)
        graph = family.build_graph(spec)
        fits = family.cost_report(graph, self.profile, 1, "float32").max_train_batch
        while batch > 1 and batch > fits // 2:
            batch //= 2
        return batch

    def measure(self, subject: Subject, label: str, precision: str, compiled: bool, family) -> dict:
        """Training step and sampling of ``subject`` in one precision and mode; one row."""
        args, device = self.args, self.device
        bf16 = precision == "bf16"
        row = {"spec": label, "batch": subject.batch, "params": subject.params, "precision": precision,
               "mode": "compiled" if compiled else "eager",
               "depth": "shallow" if label.endswith("(shallow)") else "full"}
        if compiled:  # what training.compile runs: the model's loss and generate, fullgraph=True
            from flowspec.core.speed import compile_model

            torch._dynamo.reset()
            compile_model(subject.model)
        loss, sample = subject.loss_fn(bf16), subject.sample_fn(bf16)
        step, draw = subject.train_step(loss), subject.sampler(sample)
        for what, fn in (("train", step), ("sample", draw)):
            try:
                tic = time.perf_counter()
                if compiled:  # the first call compiles; the counters say whether later calls recompile
                    from torch._dynamo.utils import counters

                    counters.clear()
                    fn()
                    sync(device)
                    row[f"{what}_compile_s"] = time.perf_counter() - tic
                    graphs, breaks = dynamo_counts()
                seconds, peak = timed(fn, device, args.repeats, args.warmup)
                row[f"{what}_ms"] = 1e3 * seconds
                row[f"{what}_images_s"] = subject.batch / seconds
                row[f"{what}_peak_mib"] = peak / MIB
                if compiled:
                    after, _ = dynamo_counts()
                    row[f"{what}_graphs"], row[f"{what}_graph_breaks"] = graphs, breaks
                    row[f"{what}_recompiled_while_timed"] = after - graphs
            except OverTime as error:  # keep what this row measured, then end the spec
                row[f"{what}_error"] = error_line(error)
                self.finish(row, family, subject, precision)
                raise
            except Exception as error:  # one line per failure; the other half still runs
                row[f"{what}_error"] = error_line(error)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if compiled:
                row[f"{what}_break_reasons"] = break_reasons()
        return self.finish(row, family, subject, precision)

    def finish(self, row: dict, family, subject: Subject, precision: str) -> dict:
        row["predicted"] = self.predicted(family, subject.graph, subject.batch, precision)
        say(format_row(row))
        self.record(row)
        return row

    def run_spec(self, path: Path, phase: str) -> None:
        from flowspec.family import family_of
        from flowspec.spec import load_spec

        args = self.args
        name = path.name
        cap = args.spec_cap if phase == "eager" else args.compile_cap
        if self.left() < min(cap, 20):
            self.record({"spec": name, "phase": phase, "skipped": f"budget of {args.budget:.0f} s spent"})
            say(f"{name:<24} {phase:<14} skipped: budget of {args.budget:.0f} s spent")
            return
        subject = None
        try:
            with time_cap(min(cap, max(self.left(), 1.0)), f"{name} {phase}"):
                spec = load_spec(path)
                family = family_of(spec)
                if phase == "eager":
                    batch = self.fitting_batch(spec, family)
                    subject = Subject(spec, family, batch, self.device)
                    for precision in ("float32", "bf16"):
                        self.measure(subject, name, precision, False, family)
                else:
                    precision = "float32" if phase == "compiled-fp32" else "bf16"
                    small = shallow(spec, args.compile_steps)
                    label = name + (" (shallow)" if small is not spec else "")
                    batch = self.fitting_batch(small, family)
                    subject = Subject(small, family, batch, self.device)
                    if small is not spec:  # the eager twin of the shallow copy, for the ratio
                        self.measure(subject, label, precision, False, family)
                    self.measure(subject, label, precision, True, family)
        except (Exception, OverTime) as error:
            self.record({"spec": name, "phase": phase, "error": error_line(error)})
            say(f"{name:<24} {phase:<14} FAILED {error_line(error)}")
        finally:
            del subject
            gc.collect()
            if phase != "eager":
                torch._dynamo.reset()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def ddp(self) -> None:
        count = self.meta["device_count"]
        if count < 2:
            self.meta["ddp"] = f"{count} device: DDP skipped"
            say(self.meta["ddp"])
            return
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(Path(__file__).resolve()), "--ddp-worker", str(self.args.ddp_spec)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=max(30.0, min(180.0, self.left())),
                                  env=env, cwd=ROOT)
            lines = [line for line in done.stdout.splitlines() if line.startswith("DDP ")]
            self.meta["ddp"] = lines[-1] if lines and done.returncode == 0 else \
                f"DDP FAILED (exit {done.returncode}): {(done.stderr.strip().splitlines() or [''])[-1][:300]}"
        except subprocess.TimeoutExpired:
            self.meta["ddp"] = "DDP FAILED: torchrun did not finish in time"
        say(self.meta["ddp"])
        self.write()

    def write(self) -> None:
        if not self.args.out:
            return
        base = Path(self.args.out)
        if base.suffix in (".json", ".md"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".json").write_text(json.dumps({"meta": self.meta, "rows": self.results}, indent=1))
        base.with_suffix(".md").write_text(markdown(self.meta, self.results))


def fmt(value, spec: str = ".1f") -> str:
    return "" if value is None else format(value, spec)


def format_row(row: dict) -> str:
    parts = [f"{row['spec']:<24} {row['precision']:<7} {row['mode']:<8} batch {row['batch']:<4}"]
    predicted = row.get("predicted", {})
    for what in ("train", "sample"):
        if f"{what}_error" in row:
            parts.append(f"{what} FAILED {row[what + '_error']}")
            continue
        if f"{what}_ms" not in row:
            continue
        guess = " / ".join(f"{dtype} {p[what + '_ms']:.2f}" for dtype, p in predicted.items())
        text = (f"{what} {row[what + '_images_s']:9.1f} img/s {row[what + '_ms']:8.2f} ms "
                f"(predicted {guess} ms) peak {row[what + '_peak_mib']:.0f} MiB")
        if row["mode"] == "compiled":
            text += (f" compile {row[what + '_compile_s']:.1f} s, {row[what + '_graphs']} graph(s), "
                     f"{row[what + '_graph_breaks']} break(s), {row[what + '_recompiled_while_timed']} recompile(s) timed")
        parts.append(text)
    return " | ".join(parts)


def markdown(meta: dict, rows: list[dict]) -> str:
    out = [f"GPU suite on {meta['device']} (torch {meta['torch']}, CUDA {meta['cuda']}, cost-report profile "
           f"{meta['profile']}; cudnn TF32 {meta['cudnn_allow_tf32']}, float32 matmul precision "
           f"{meta['matmul_precision']})", "",
           "| spec | precision | mode | batch | train img/s | train ms | predicted train ms | train peak MiB | "
           "sample img/s | sample ms | predicted sample ms | sample peak MiB | compile s (train / sample) | "
           "graphs / breaks / recompiles | note |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "precision" not in row:
            note = row.get("error") or row.get("skipped", "")
            out.append(f"| {row['spec']} | | {row['phase']} | | | | | | | | | | | | {note} |")
            continue
        predicted = row.get("predicted", {})

        def guess(what):
            return " / ".join(f"{p[what + '_ms']:.2f} ({d})" for d, p in predicted.items())
        compiled = row["mode"] == "compiled"
        compile_s = f"{fmt(row.get('train_compile_s'))} / {fmt(row.get('sample_compile_s'))}" if compiled else ""
        graphs = " ; ".join(f"{row.get(w + '_graphs', '')} / {row.get(w + '_graph_breaks', '')} / "
                            f"{row.get(w + '_recompiled_while_timed', '')}" for w in ("train", "sample")) if compiled else ""
        note = "; ".join([f"{w}: {row[w + '_error']}" for w in ("train", "sample") if w + "_error" in row]
                         + [f"{w} breaks: {', '.join(row[w + '_break_reasons'])}" for w in ("train", "sample")
                            if row.get(w + "_break_reasons")])
        out.append(f"| {row['spec']} | {row['precision']} | {row['mode']} | {row['batch']} | "
                   f"{fmt(row.get('train_images_s'))} | {fmt(row.get('train_ms'), '.2f')} | {guess('train')} | "
                   f"{fmt(row.get('train_peak_mib'), '.0f')} | {fmt(row.get('sample_images_s'))} | "
                   f"{fmt(row.get('sample_ms'), '.2f')} | {guess('sample')} | {fmt(row.get('sample_peak_mib'), '.0f')} | "
                   f"{compile_s} | {graphs} | {note} |")
    out += ["", f"DDP: {meta['ddp']}", ""]
    return "\n".join(out)


def ddp_worker(spec_path: str, steps: int = 10) -> None:
    """One rank of the torchrun DDP check (nccl): a few steps of the spec's training on the same
    seed, then the ranks' weights must agree (the gradients were all-reduced)."""
    import torch.distributed as dist

    from flowspec.family import family_of
    from flowspec.spec import load_spec

    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    device = torch.device("cuda", local)
    dist.init_process_group("nccl")
    spec = load_spec(spec_path)
    subject = Subject(spec, family_of(spec), getattr(spec.training, "batch_size", 64), device, seed=0)
    torch.manual_seed(1 + rank)  # each rank sees different data
    subject.x, subject.c = example_batch(spec, subject.model, subject.batch, device)
    wrapped = torch.nn.parallel.DistributedDataParallel(subject.objective, device_ids=[local])
    subject.objective = wrapped
    step = subject.train_step(subject.loss_fn(False))
    seconds, _ = timed(step, device, steps, 2)
    flat = torch.cat([p.detach().flatten() for p in subject.model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    differ = max(float((g - flat).abs().max()) for g in gathered)
    if rank == 0:
        world = dist.get_world_size()
        verdict = "weights agree" if differ == 0.0 else f"weights DIFFER by {differ:.3e}"
        say(f"DDP {world} ranks nccl {Path(spec_path).name}: {world * subject.batch / seconds:.1f} images/s "
            f"({1e3 * seconds:.2f} ms a step, batch {subject.batch} per rank); after {steps + 2} steps {verdict}")
    dist.destroy_process_group()


def choose_profile(name: str, device: torch.device):
    from flowspec.report.devices import load_devices

    devices = load_devices()
    if name == "auto":
        label = torch.cuda.get_device_name(device).lower() if device.type == "cuda" else ""
        name = next((key for key in devices if key in label), "h200")
    return devices[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write OUT.json and OUT.md (rewritten after every spec); default: stdout")
    parser.add_argument("--specs", nargs="*", help="spec files or names under specs/ (default: every shipped spec)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, float32 compile only, 150 s budget")
    parser.add_argument("--budget", type=float, help="seconds for the whole suite (default 270; --quick 150)")
    parser.add_argument("--spec-cap", type=float, default=30.0, help="seconds per spec, eager phase")
    parser.add_argument("--compile-cap", type=float, default=100.0, help="seconds per spec and compiled phase")
    parser.add_argument("--compile-steps", type=int, default=2, help="steps per level of the compiled copy (0: all)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--batch", type=int, help="batch for every spec (default: the spec's training batch)")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--profile", default="auto", help="cost-report device profile (default: from the GPU's name)")
    parser.add_argument("--ddp-spec", default=str(ROOT / "specs" / "glow-digits.yaml"))
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: a dry run of the same path
    parser.add_argument("--ddp-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args.ddp_worker)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        say(f"gpu.py: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}); nothing measured")
        return 0
    args.budget = args.budget if args.budget is not None else (150.0 if args.quick else 270.0)
    args.repeats = args.repeats or (3 if args.quick else 10)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # a dry run on a shared machine: no oversubscription
    torch._logging.set_logs(dynamo=logging.ERROR, inductor=logging.ERROR)  # breaks are counted, not logged
    warnings.filterwarnings("ignore", category=FutureWarning)
    import flowspec.families  # noqa: F401  (registers the model families)

    suite = Suite(args, device, choose_profile(args.profile, device))
    paths = [Path(s) if Path(s).exists() else ROOT / "specs" / (s if s.endswith(".yaml") else s + ".yaml")
             for s in (args.specs or [])] or sorted((ROOT / "specs").glob("*.yaml"))
    say(f"GPU suite: {suite.meta['device']}, torch {torch.__version__}, {len(paths)} specs, budget "
        f"{args.budget:.0f} s, profile {suite.profile.name}")
    for path in paths:
        suite.run_spec(path, "eager")
    if args.device == "cuda":
        suite.ddp()
    else:
        suite.meta["ddp"] = "cpu dry run: DDP skipped"
    first = [p for p in paths if p.name in COMPILE_FIRST]
    compile_order = sorted(first, key=lambda p: COMPILE_FIRST.index(p.name)) + [p for p in paths if p not in first]
    phases = [] if args.no_compile else ["compiled-fp32"] if args.quick else ["compiled-fp32", "compiled-bf16"]
    for phase in phases:
        for path in compile_order:
            suite.run_spec(path, phase)
    suite.write()
    if not args.out:
        say(markdown(suite.meta, suite.results))
        say(json.dumps({"meta": suite.meta, "rows": suite.results}))
    say(f"GPU suite done in {args.budget - suite.left():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
