"""Device profiles for the roofline: peak FLOP/s per dtype, memory bandwidth, memory size.

Profiles come from ``flowspec/report/devices.yaml`` (vendor datasheet peaks), extended or
overridden by a user's file of the same form (``--devices FILE``). ``cpu`` is measured on the spot
by :func:`measure_cpu`: the best of a matmul and a conv rate, a copy's bandwidth, the latency of an
autograd-recorded op, and (:class:`~flowspec.report.rates.ShapeRates`) the rate each of the spec's
own conv / linear shapes achieves, measured when the report asks for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from flowspec.errors import FlowSpecError
from flowspec.report.rates import ShapeRates, best_time

PROFILES = Path(__file__).with_name("devices.yaml")


class DeviceError(FlowSpecError):
    """An unknown device, or a device file that does not parse."""


@dataclass(frozen=True)
class Device:
    name: str
    peak_flops: dict[str, float]
    bandwidth: float  # bytes / s
    memory: float  # bytes
    description: str = ""
    measured: dict[str, float] = field(default_factory=dict)
    latency: float = 0.0  # seconds per dispatched tensor operation (kernel launch + framework)
    #: measures the achieved conv / matmul rate at a layer's own shapes (``cpu`` only; profiles
    #: from devices.yaml use their peak for every layer)
    shape_rates: ShapeRates | None = field(default=None, compare=False, repr=False)
    backward_latency: float | None = None  # seconds per op in the backward pass; None: ``latency``

    @property
    def latency_backward(self) -> float:
        return self.latency if self.backward_latency is None else self.backward_latency

    def peak(self, dtype: str) -> float:
        if dtype not in self.peak_flops:
            raise DeviceError(f"device {self.name} has no peak for dtype {dtype}; it lists "
                              f"{', '.join(sorted(self.peak_flops))}")
        return self.peak_flops[dtype]


#: the sane range of each figure of a profile: a device file is a user's input, and a profile of
#: 1 byte of memory or a NaN peak would only make every figure of the report meaningless
RANGES = {"peak_flops": (1e6, 1e19, "FLOP/s"), "bandwidth": (1e6, 1e16, "bytes/s"),
          "memory": (2.0 ** 20, 1e18, "bytes"), "latency": (0.0, 1.0, "s"), "latency_backward": (0.0, 1.0, "s")}


def _check_ranges(device: Device, where) -> None:
    figures = [(("peak_flops", dtype), value) for dtype, value in device.peak_flops.items()]
    figures += [(("bandwidth",), device.bandwidth), (("memory",), device.memory), (("latency",), device.latency)]
    if device.backward_latency is not None:
        figures.append((("latency_backward",), device.backward_latency))
    for path, value in figures:
        low, high, unit = RANGES[path[0]]
        if not low <= value <= high:
            raise DeviceError(f"{where(path)}: {value:g} {unit} is outside the sane range "
                              f"[{low:.3g}, {high:.3g}] (hint: peaks in FLOP/s, bandwidth in bytes/s, "
                              "memory in bytes, latency in seconds, e.g. memory: 80.0e9)")


def _parse(name: str, entry, source: Path, where=None) -> Device:
    where = where or (lambda path: f"{source}: {'.'.join((name,) + path)}")
    try:
        peaks = {str(k): float(v) for k, v in dict(entry["peak_flops"]).items()}
        device = Device(name, peaks, float(entry["bandwidth"]), float(entry["memory"]),
                        str(entry.get("description", "")), latency=float(entry.get("latency", 0.0)),
                        backward_latency=None if entry.get("latency_backward") is None
                        else float(entry["latency_backward"]))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise DeviceError(f"{where(())}: needs peak_flops (a mapping dtype -> FLOP/s), "
                          f"bandwidth (bytes/s) and memory (bytes): {error}") from None
    if not device.peak_flops:
        raise DeviceError(f"{where(('peak_flops',))}: lists no dtype")
    _check_ranges(device, where)
    return device


def load_devices(extra: str | Path | None = None) -> dict[str, Device]:
    """The shipped profiles, updated with those of ``extra`` (a regular UTF-8 YAML file; every
    problem is one line naming the file, the line and the field)."""
    from flowspec.errors import SpecError
    from flowspec.spec.yaml_source import load_yaml, read_text_file

    devices: dict[str, Device] = {}
    for source in [PROFILES] + ([Path(extra)] if extra else []):
        try:
            text = read_text_file(source, what="device")
            if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
                continue  # an empty file (or only comments) adds no device
            data, marks = load_yaml(text, str(source))
        except SpecError as error:
            raise DeviceError(str(error)) from None
        if not isinstance(data, dict):
            raise DeviceError(f"{source}: expected a mapping of device name -> profile")
        for name, entry in data.items():
            def where(path, name=name, marks=marks):
                line, column = marks.locate((name,) + path)
                at = f":{line}:{column}" if line is not None else ""
                return f"{source}{at}: {'.'.join(str(p) for p in (name,) + path)}"

            devices[str(name)] = _parse(str(name), entry, source, where)
    return devices


def _physical_memory() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16e9


@torch.no_grad()
def measure_cpu(repeats: int = 5) -> Device:
    """This machine's float32 matmul and 3x3 conv rates, copy bandwidth and the latency of one
    small autograd-recorded op (forward, and its node in the backward pass), at torch's current thread count (about a second); its
    ``shape_rates`` measures each conv / linear shape of a spec when a report asks for it."""
    n = 512
    a, b = torch.randn(n, n), torch.randn(n, n)
    matmul = 2.0 * n ** 3 / best_time(lambda: a @ b, repeats)
    x, w = torch.randn(16, 64, 16, 16), torch.randn(64, 64, 3, 3)
    conv_flops = 2.0 * 16 * 64 * 64 * 9 * 16 * 16
    conv = conv_flops / best_time(lambda: torch.nn.functional.conv2d(x, w, padding=1), repeats)
    source = torch.randn(16 * 2 ** 20)  # 64 MiB, beyond the caches
    target = torch.empty_like(source)
    bandwidth = 2.0 * source.numel() * 4 / best_time(lambda: target.copy_(source), repeats)
    with torch.enable_grad():  # a training step's ops are recorded by autograd, the graph kept
        tiny = torch.ones(4, requires_grad=True)
        ops = 200

        def chain():
            y = tiny
            for _ in range(ops):
                y = y * 1.0
            return y

        forward = best_time(chain, repeats)
        both = best_time(lambda: chain().sum().backward(), repeats)
        latency, backward_latency = forward / ops, max(both - forward, 0.0) / ops
    return Device("cpu", {"float32": max(matmul, conv)}, bandwidth, _physical_memory(),
                  f"this CPU, measured ({torch.get_num_threads()} threads)",
                  {"matmul_flops": matmul, "conv_flops": conv, "bandwidth": bandwidth, "latency": latency,
                   "backward_latency": backward_latency},
                  latency=latency, shape_rates=ShapeRates(), backward_latency=backward_latency)


def get_device(name: str, extra: str | Path | None = None) -> Device:
    if name == "cpu":
        return measure_cpu()
    devices = load_devices(extra)
    if name not in devices:
        raise DeviceError(f"unknown device {name!r}; known: cpu, {', '.join(sorted(devices))} "
                          f"(add one with --devices FILE)")
    return devices[name]
