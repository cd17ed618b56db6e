"""What every verb checks before it does its work: the spec loads and validates (one located line
per problem otherwise), a folder named after the spec stays inside its parent, and a model that
cannot fit in this machine's memory is refused before a weight is allocated."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

from flowspec.errors import FlowSpecError, Problem, SpecError
from flowspec.spec.training import MAX_BATCH as TRAINING_MAX_BATCH
from flowspec.spec.training import MAX_EPOCHS as TRAINING_MAX_EPOCHS
from flowspec.spec.training import MAX_STEPS as TRAINING_MAX_STEPS

EXPORT_BATCH = 4  # the batch `build` runs its exported programs at (flowspec.compile.export)

# The bounds of the size-like options (each stated in its --help and in docs/guide.md#limits-and-errors):
MAX_BATCH = TRAINING_MAX_BATCH  # --batch, --batch-size: examples in one pass (as training.batch_size)
MAX_OUTPUT_EXAMPLES = 4_096  # sample -n, --per-class x classes, interpolate pairs x steps, manipulate inputs x strengths
MAX_STEPS_BETWEEN = 1_024  # interpolate --steps
MAX_STRENGTHS = 64  # manipulate --strengths
MAX_WIDTH = 4_096  # check --width
MAX_REPEATS = 1_000  # bench --repeats
MAX_THREADS = 1_024  # bench --threads
MAX_SEED = 2 ** 63 - 1  # --seed: torch's generator takes a 64-bit seed
MAX_TRAINING_STEPS = TRAINING_MAX_STEPS  # train --steps, --warmup, --eval-every, ... (as the spec's)
MAX_EPOCHS = TRAINING_MAX_EPOCHS  # train --epochs


def refuse_too_many(count: int, what: str, bound: int = MAX_OUTPUT_EXAMPLES) -> int:
    """``count`` if it is at most ``bound``, else a :class:`FlowSpecError` naming ``what``."""
    if count > bound:
        raise FlowSpecError(f"{what}: {count:,} examples; at most {bound:,} in one run")
    return count


def load_validated(path: Path, overrides: list[str] | None = None):
    """``(spec, graph)`` of the spec file at ``path``, with the ``--set`` ``overrides`` applied:
    loaded, bounded and validated (every :class:`SpecError` carries its located lines)."""
    from flowspec.graph import build_graph
    from flowspec.spec import load_spec

    spec = load_spec(path, overrides)
    return spec, build_graph(spec)


def named_folder(parent: Path, name: str) -> Path:
    """``parent/name``, checked to stay inside ``parent`` (a spec's name is a plain name, see
    :func:`flowspec.spec.models.plain_name`; this holds for specs made in Python too)."""
    from flowspec.spec.models import plain_name

    try:
        folder = parent / plain_name(name)
    except ValueError as error:
        raise SpecError(Problem(str(error), ("name",))) from None
    if not folder.resolve().is_relative_to(parent.resolve()):
        raise SpecError(Problem(f"name {name!r} would leave the output folder {parent}", ("name",)))
    return folder


def available_memory() -> int:
    """Bytes of memory this process can use now: ``MemAvailable`` of ``/proc/meminfo``, else the
    machine's physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2 ** 63


def binary_size(count: float) -> str:
    """``3.6 TiB``, ``23 GiB``, ``512 MiB``: bytes in binary units, three significant digits."""
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        scale = 2 ** (10 * ("KMGTP".index(unit[0]) + 1))
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


def refuse_oversized(graph, available: int | None = None) -> None:
    """A :class:`SpecError` when the model's float32 parameters plus one pass at
    :data:`EXPORT_BATCH` (the cost report's sampling memory, from the cost rules: nothing is
    allocated) exceed ``available`` bytes (default: :func:`available_memory`)."""
    from flowspec.family import family_of
    from flowspec.report import load_devices

    # memory does not depend on the device
    report = family_of(graph.spec).cost_report(graph, load_devices()["a100"], EXPORT_BATCH)
    available = available_memory() if available is None else available
    if report.sample_bytes <= available:
        return
    weights = 4 * report.params
    passes = report.sample_bytes - weights
    message = (f"needs {binary_size(weights)} of parameters ({report.params:,})"
               + (f" and {binary_size(passes)} for a batch-{EXPORT_BATCH} pass" if passes >= weights / 100 else "")
               + f"; this machine has {binary_size(available)} available")
    hint = "`flowspec report` gives each layer's parameters and memory; narrow the widths or the input"
    raise SpecError(graph.problem(message, (), hint))


def refuse_oversized_check(graph, batch: int, jacobian: int, available: int | None = None) -> None:
    """A :class:`SpecError` when ``flowspec check``'s narrow copy (``graph``) cannot fit: float64
    parameters, float64 training activations of ``batch`` examples (the vectorised Jacobian
    backpropagates one cotangent per input value, as a batch would), and the ``jacobian x
    jacobian`` float64 Jacobian (cost rules only: nothing is allocated)."""
    from flowspec.family import family_of
    from flowspec.report import load_devices

    report = family_of(graph.spec).cost_report(graph, load_devices()["a100"], max(batch, 1))
    available = available_memory() if available is None else available
    need = 2 * (4 * report.params + report.train_activation_bytes) + 8 * jacobian ** 2
    if need <= available:
        return
    message = (f"the narrow float64 copy that `check` builds needs {binary_size(need)} ({report.params:,} "
               f"parameters, a {jacobian:,} x {jacobian:,} Jacobian); this machine has {binary_size(available)} "
               f"available")
    raise SpecError(graph.problem(message, (), "`check` narrows conditioner widths and image sizes only, not a vector input, a "
                                               "condition or spline bins"))


def finite_temperature(value: float, option: str = "--temperature") -> float:
    """``value`` if it is a finite temperature >= 0 (the scale of every prior's std; 0 draws the
    priors' means)."""
    if not (math.isfinite(value) and value >= 0):
        raise FlowSpecError(f"{option} {value:g}: a temperature is a finite number >= 0 (it scales the "
                            "prior's standard deviation: 1 is the model, 0.7 is usual, 0 the mean)")
    return value


def writable_folder(folder: Path) -> Path:
    """``folder`` if it is, or can be made, a writable folder: its nearest existing ancestor is a
    folder this process may write. Otherwise the :class:`OSError` that writing would raise later
    (after loading data and compiling), raised now; the CLI prints it as one line."""
    existing = next(p for p in [folder, *folder.parents] if p.exists() or p == Path(p.anchor or "."))
    if existing.exists() and not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing))
    return folder
