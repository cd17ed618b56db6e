"""Speed and memory figures of a spec's model (``flowspec bench``, ``benchmarks/glow_bench.py``).

* training-step throughput: images/s of one Adam step on ``bits_per_dim`` (forward, backward,
  update), and the same with invertible backprop and under CPU bf16 autocast (``training.bf16``);
* sampling throughput: images/s of ``sample(batch)`` in eval mode (cached invconv weights), and of
  the model folded by :func:`~flowspec.compile.fold.fold_for_inference`;
* achieved FLOP/s of a training step (FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``
  over forward + backward, divided by the median step time), as a fraction of the machine's
  measured conv peak (the best FLOP/s of a few large 3x3 convolutions on this machine, same
  thread count);
* memory: activations saved for backward (exact, saved-tensor hooks) and the peak RSS a step adds
  (fresh subprocess, ``ru_maxrss``), see :mod:`flowspec.bench.memory`;
* the same throughputs for normflows' and FrEIA's Glow of the same shape when installed;
* the conv ceiling of each contestant, training and sampling: ``batch`` over the median time of
  its convolutions alone, replayed each in its faster layout (:mod:`flowspec.bench.ceiling`) in the
  same rounds as the contestants -- the most any implementation on torch's convolutions can reach;
  the share of flowspec's ceiling that each flowspec variant (eager, folded, compiled) reaches,
  against the ceiling targets (training 85%, sampling 90%, and 1.2x each baseline), and issue 7's
  targets (1.5x the best baseline's training rate, 2x its sampling rate) as fractions of the ceiling;
  and flowspec's convolutions timed in place (inside its own step and sampling call, as one more
  contestant in the same rounds) against the same calls replayed alone: the share of the ceiling
  it would reach if nothing else took time.

Timings alternate the contestants round-robin and report medians, so drifting machine load hits
them alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from flowspec.compile import compile as compile_spec
from flowspec.compile.fold import fold_for_inference, folding_error
from flowspec.compile.model import FlowModel
from flowspec.bench.ceiling import ConvsInPlace, conv_replay, record_convs
from flowspec.bench.memory import saved_activation_bytes, step_peak_rss
from flowspec.errors import FlowSpecError
from flowspec.spec.models import MemoryConfig, Spec


def with_steps(spec: Spec, steps: int | None = None, invertible: bool | None = None) -> FlowModel:
    """The spec's model with ``steps`` per level (compact form) and/or invertible backprop set."""
    update: dict = {}
    if steps is not None:
        if spec.steps is None:
            raise ValueError("changing K needs a spec in the compact form (levels, steps, step)")
        update["steps"] = steps
    if invertible is not None:
        update["memory"] = MemoryConfig(invertible_backprop=invertible)
    return compile_spec(spec.model_copy(update=update) if update else spec)


#: shares of flowspec's conv ceiling the faster flowspec variant must reach, and its ratio to each baseline
CEILING_TARGETS = {"training": 0.85, "sampling": 0.90}
BASELINE_TARGET = 1.2
#: variants not counted toward those targets: bf16 is not float32, invertible backprop trades speed for memory
SLOWER_OR_NOT_FLOAT32 = ("flowspec bf16-autocast", "flowspec invertible-backprop")
#: the name prefix of a contestant's convolutions replayed alone (its conv ceiling)
CONVS_ALONE = "convs alone: "
#: the name of flowspec's own step (or sampling call) run again with its convolutions timed in place
CONVS_IN_PLACE = "convs in place: flowspec"
WARMUP = 2


#: the bench's clocks: ``wall`` (elapsed seconds) and ``cpu`` (this process's CPU seconds: on a
#: loaded machine, time spent waiting for a core is left out; with one thread on an idle machine
#: the two agree)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def alternate(contestants: dict[str, Callable[[], object]], repeats: int, warmup: int = WARMUP,
              clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds per call of each contestant (by ``clock``), timed round-robin."""
    for fn in contestants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(repeats):
        for name, fn in contestants.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def conv_peak_flops(repeats: int = 5, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best measured FLOP/s of large 3x3 convolutions (forward) on this machine."""
    best = 0.0
    with torch.no_grad():
        for batch, channels, size in ((16, 128, 16), (16, 256, 8), (8, 64, 32)):
            x = torch.randn(batch, channels, size, size)
            conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            flops = 2.0 * batch * channels * channels * 9 * size * size
            seconds = alternate({"conv": lambda: conv(x)}, repeats, clock=clock)["conv"]
            best = max(best, flops / seconds)
    return best


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs (multiply-add = 2) of the matmuls/convs ``fn`` runs, forward and backward."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def add_compiled(contestants: dict, samplers: dict, build: Callable[[bool], torch.nn.Module], state: dict,
                 x: torch.Tensor, batch: int) -> None:
    """The model under ``torch.compile`` (``training.compile``) as one more training contestant and
    one more sampler, both named ``flowspec compiled``: ``build(training)`` makes a fresh model for
    training or sampling, which gets ``state`` before it is compiled."""
    from flowspec.core.speed import compile_model

    fast = build(True)
    fast.load_state_dict(state)
    compile_model(fast)
    contestants["flowspec compiled"] = training_step(lambda v: fast.loss_per_dim(v).mean(), fast.parameters(), x)
    fast_sampler = build(False)
    fast_sampler.load_state_dict(state)
    compile_model(fast_sampler)
    samplers["flowspec compiled"] = lambda: fast_sampler.sample(batch)


def training_step(loss_fn: Callable[[torch.Tensor], torch.Tensor], parameters, x: torch.Tensor) -> Callable[[], None]:
    """One Adam step on ``loss_fn(x)``, every contestant with the optimizer ``flowspec train`` runs:
    ``torch.optim.Adam(fused=True)`` (on CPU torch's default is the per-parameter loop, measured
    2.7x slower on glow-bench's 270 parameter tensors)."""
    optimizer = torch.optim.Adam(list(parameters), lr=1e-5, fused=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(x).backward()
        optimizer.step()

    return step


@dataclass
class BenchReport:
    spec: str
    batch: int
    params: int
    train: dict[str, float] = field(default_factory=dict)  # images/s
    sample: dict[str, float] = field(default_factory=dict)  # images/s
    step_flops: float = 0.0
    conv_peak: float = 0.0
    folding: dict[str, float] = field(default_factory=dict)
    activations: dict[str, int] = field(default_factory=dict)  # bytes
    peak_rss: dict[str, int] = field(default_factory=dict)  # bytes
    skipped: dict[str, str] = field(default_factory=dict)
    baseline_params: dict[str, int] = field(default_factory=dict)
    train_ceiling: dict[str, float] = field(default_factory=dict)  # images/s
    sample_ceiling: dict[str, float] = field(default_factory=dict)  # images/s
    clock: str = "wall"
    #: seconds flowspec's convolutions take in place (inside its step / sampling call), and replayed alone
    convs_in_place: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def achieved_flops(self) -> float:
        return self.step_flops * self.train.get("flowspec", 0.0) / self.batch

    def lines(self) -> list[str]:
        mib = 2.0 ** 20
        out = [f"spec {self.spec}: batch {self.batch}, {self.params:,} parameters, "
               f"{torch.get_num_threads()} thread(s), {self.clock} clock"]
        for name, rate in self.train.items():
            ratio = rate / self.train["flowspec"]
            out.append(f"train step  {name:<24} {rate:8.1f} images/s  ({ratio:.2f}x flowspec)")
        for name, rate in self.sample.items():
            ratio = rate / self.sample["flowspec"]
            out.append(f"sampling    {name:<24} {rate:8.1f} images/s  ({ratio:.2f}x flowspec)")
        if self.step_flops:
            out.append(f"FLOPs       training step {self.step_flops / 1e9:.2f} GFLOP; achieved "
                       f"{self.achieved_flops / 1e9:.2f} GFLOP/s = {self.achieved_flops / self.conv_peak:.1%} "
                       f"of the measured conv peak {self.conv_peak / 1e9:.2f} GFLOP/s")
        for name, ceiling in self.train_ceiling.items():
            out.append(f"ceiling     {name:<24} convs alone: training {ceiling:8.1f} images/s (reached "
                       f"{self.train[name] / ceiling:.0%}), sampling {self.sample_ceiling[name]:8.1f} "
                       f"images/s (reached {self.sample[name] / self.sample_ceiling[name]:.0%})")
        for what, (inside, alone) in self.convs_in_place.items():
            out.append(f"ceiling     flowspec's convs in place, {what}: {inside * 1e3:.1f} ms per call against "
                       f"{alone * 1e3:.1f} ms replayed alone: with everything else free it would reach "
                       f"{alone / inside:.0%} of the ceiling")
        out += self._ceiling_target_lines()
        out += self._target_lines()
        if self.folding:
            out.append(f"folding     max relative difference folded vs unfolded: samples "
                       f"{self.folding['samples']:.2e}, log-prob {self.folding['log_prob']:.2e}")
        for name, size in self.activations.items():
            out.append(f"memory      saved activations {name:<28} {size / mib:8.1f} MiB")
        for name, size in self.peak_rss.items():
            out.append(f"memory      peak RSS added by one step {name:<19} {size / mib:8.1f} MiB")
        for name, count in self.baseline_params.items():
            out.append(f"baseline    {name}: {count:,} parameters")
        for name, why in self.skipped.items():
            out.append(f"skipped     {name}: {why}")
        return out

    def _ceiling_target_lines(self) -> list[str]:
        """The share of flowspec's conv ceiling that the default model (eager) and the fastest
        float32 flowspec variant reach, against :data:`CEILING_TARGETS`, and their ratios to each
        baseline, against :data:`BASELINE_TARGET`."""
        if "flowspec" not in self.train_ceiling:
            return []
        baselines = [name for name in self.train if name in self.baseline_params]
        lines = []
        for what, rates, ceiling in (("training", self.train, self.train_ceiling["flowspec"]),
                                     ("sampling", self.sample, self.sample_ceiling["flowspec"])):
            ours = {name: rate for name, rate in rates.items()
                    if name.startswith("flowspec") and name not in SLOWER_OR_NOT_FLOAT32}
            best = max(ours, key=ours.__getitem__)
            for variant in dict.fromkeys(("flowspec", best)):  # the default (eager), and the fastest variant
                share, target = ours[variant] / ceiling, CEILING_TARGETS[what]
                against = ", ".join(f"{ours[variant] / rates[name]:.2f}x {name}" for name in baselines)
                beats = all(ours[variant] >= BASELINE_TARGET * rates[name] for name in baselines)
                lines.append(f"target      {what}: {variant} at {share:.0%} of flowspec's conv ceiling (target "
                             f"{target:.0%}: {'met' if share >= target else 'missed'})" + (
                                 f"; {against} (target {BASELINE_TARGET:g}x each: {'met' if beats else 'missed'})"
                                 if baselines else ""))
        return lines

    def _target_lines(self) -> list[str]:
        baselines = [name for name in self.train if name in self.baseline_params]
        if not baselines or "flowspec" not in self.train_ceiling:
            return []
        lines = []
        for what, rates, factor, ceiling in (("training", self.train, 1.5, self.train_ceiling),
                                             ("sampling", self.sample, 2.0, self.sample_ceiling)):
            best = max(baselines, key=rates.__getitem__)
            target = factor * rates[best]
            reachable = "below the ceiling" if target <= ceiling["flowspec"] else \
                "above the ceiling: no implementation on torch's convolutions reaches it here"
            lines.append(f"target      {what} {factor:g}x {best} = {target:.1f} images/s = "
                         f"{target / ceiling['flowspec']:.0%} of flowspec's conv ceiling ({reachable}); "
                         f"flowspec is at {rates['flowspec'] / rates[best]:.2f}x")
        return lines


def bench(spec_path: str, spec: Spec, batch: int = 16, repeats: int = 5, baselines: bool = True,
          memory: bool = True, memory_steps: tuple[int, int] = (8, 32), seed: int = 0,
          overrides: list[str] | None = None, compile: bool = False, clock: str = "wall") -> BenchReport:
    """Measure everything listed in the module docstring for ``spec`` (float32, CPU); ``overrides``
    are the ``--set`` values ``spec`` was loaded with (the memory subprocess loads it again).
    ``compile``: also time the model under :func:`~flowspec.core.speed.compile_model` (``flowspec
    compiled``, training and sampling, alternating with the rest; compilation is not timed).
    ``clock``: a key of :data:`CLOCKS` (images/s per wall or per CPU second)."""
    if getattr(spec, "condition", None) is not None or getattr(spec.input, "continuous", False):
        what = "a condition:" if getattr(spec, "condition", None) is not None else "input.data: continuous"
        raise FlowSpecError(f"{spec_path}: bench measures unconditional flows of discrete data; this spec has "
                            f"{what} (flowspec report --measure times it layer by layer and a training step)")
    torch.manual_seed(seed)
    model = with_steps(spec, invertible=False).train()
    shape = tuple(model.input_shape)
    data = torch.randint(0, model.levels, (batch, *shape)).float()
    model.initialize(data)
    report = BenchReport(str(spec_path), batch, sum(p.numel() for p in model.parameters()), clock=clock)
    timer = CLOCKS[clock]

    def flow_loss(m: FlowModel) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: m.bits_per_dim(x).mean()

    contestants = {"flowspec": training_step(flow_loss(model), model.parameters(), data)}
    twin = with_steps(spec, invertible=True).train()
    twin.load_state_dict(model.state_dict())
    contestants["flowspec invertible-backprop"] = training_step(flow_loss(twin), twin.parameters(), data)
    low = with_steps(spec, invertible=False).train()
    low.load_state_dict(model.state_dict())
    contestants["flowspec bf16-autocast"] = training_step(bf16_autocast(flow_loss(low)), low.parameters(), data)

    samplers: dict[str, Callable[[], object]] = {}
    sampler = with_steps(spec).eval()
    sampler.load_state_dict(model.state_dict())
    folded = fold_for_inference(sampler)
    report.folding = folding_error(sampler, folded)
    samplers["flowspec"] = lambda: sampler.sample(batch)
    samplers["flowspec folded"] = lambda: folded.sample(batch)
    if compile:
        def fresh(training: bool) -> FlowModel:
            return with_steps(spec, invertible=False).train() if training else with_steps(spec).eval()

        add_compiled(contestants, samplers, fresh, model.state_dict(), data, batch)
        from flowspec.core.speed import compile_model

        folded_fast = compile_model(fold_for_inference(sampler))
        samplers["flowspec folded compiled"] = lambda: folded_fast.sample(batch)

    if baselines:
        from flowspec.bench.baselines import BASELINES

        if len(shape) != 3 or spec.steps is None:
            report.skipped["baselines"] = "need an image spec in the compact form (levels, steps, step)"
        else:
            hidden = _coupling_hidden(spec)
            for name, builder in BASELINES.items():
                try:
                    other, loss, draw = builder(shape, spec.levels, spec.steps, hidden)
                except ImportError as error:
                    report.skipped[name] = f"not installed ({error.name}); pip install {name}"
                    continue
                x = data / model.levels - 0.5
                other.train()
                with torch.no_grad():
                    loss(x)  # data-dependent inits
                report.baseline_params[name] = sum(p.numel() for p in other.parameters())
                contestants[name] = training_step(loss, other.parameters(), x)
                samplers[name] = _no_grad(lambda draw=draw, other=other: (other.eval(), draw(batch)))

    # each contestant's convolutions alone, replayed in their faster layouts, timed in the same
    # rounds as the contestants: the ceiling and the rate it bounds see the same machine load
    replays = {}
    for name in ("flowspec", *report.baseline_params):
        train_replay = conv_replay(record_convs(contestants[name]))
        with torch.no_grad():
            sample_replay = conv_replay(record_convs(samplers[name]))
        if train_replay and sample_replay:
            replays[name] = (CONVS_ALONE + name, train_replay, sample_replay)
            contestants[CONVS_ALONE + name], samplers[CONVS_ALONE + name] = train_replay, sample_replay
        else:
            report.skipped[f"ceiling {name}"] = "no convolutions to bound it by (a vector spec)"
    in_place = {}
    if "flowspec" in replays:  # flowspec's convolutions timed inside its own calls, in the same rounds
        in_place["training"] = contestants[CONVS_IN_PLACE] = ConvsInPlace(contestants["flowspec"], timer)
        in_place["sampling"] = samplers[CONVS_IN_PLACE] = ConvsInPlace(samplers["flowspec"], timer)
    not_rates = (CONVS_ALONE, CONVS_IN_PLACE)
    seconds = alternate(contestants, repeats, clock=timer)
    report.train = {name: batch / s for name, s in seconds.items() if not name.startswith(not_rates)}
    with torch.no_grad():
        sample_seconds = alternate(samplers, repeats, clock=timer)
    report.sample = {name: batch / s for name, s in sample_seconds.items() if not name.startswith(not_rates)}
    for name, (label, _, _) in replays.items():
        report.train_ceiling[name], report.sample_ceiling[name] = batch / seconds[label], batch / sample_seconds[label]
    for what, recorder in in_place.items():
        ceiling = report.train_ceiling if what == "training" else report.sample_ceiling
        report.convs_in_place[what] = (recorder.median(skip=WARMUP), batch / ceiling["flowspec"])

    report.step_flops = count_flops(lambda: flow_loss(model)(data).backward())
    model.zero_grad(set_to_none=True)
    report.conv_peak = conv_peak_flops(repeats, timer)

    if memory:
        x = model.to_model_space(data + torch.rand_like(data))[0]
        for steps in memory_steps if spec.steps is not None else (None,):
            for invertible in (False, True):
                label = f"K={steps} " if steps is not None else ""
                label += "invertible" if invertible else "standard"
                m = with_steps(spec, steps, invertible).train()
                m.initialize(data)
                report.activations[label] = saved_activation_bytes(m, x)
                report.peak_rss[label] = step_peak_rss(spec_path, batch, invertible, steps, overrides)
    return report


def bf16_autocast(loss: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``loss`` under CPU bf16 autocast, as the runner's ``training.bf16: true`` runs it."""
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return loss(x)

    return run


def _no_grad(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return fn()

    return run


def _coupling_hidden(spec: Spec) -> int:
    for item in spec.step:
        conditioner = getattr(item, "conditioner", None)
        if conditioner is not None and hasattr(conditioner, "hidden"):
            return conditioner.hidden
    return 512
