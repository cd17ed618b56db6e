"""Hostile and broken input through the CLI verbs: each class gives exit 2 and one clear line on
stderr naming the file (and, for a spec, the line and field), never a traceback or a hang; the
bombs (aliases, billion-layer repeats, a 50 MB file) are refused in bounded time and memory,
before anything is expanded. The time bounds (5 s) are generous safety bounds, not benchmarks."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.cli.bounds import binary_size, named_folder, refuse_oversized
from flowspec.errors import SpecError
from flowspec.spec.expand import MAX_LAYERS, layer_count
from flowspec.spec.yaml_source import MAX_SPEC_BYTES, MAX_YAML_NODES

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
BOUND_S = 5.0

OK = "input: {shape: [1, 8, 8], levels: 17}\nlayers: [squeeze, actnorm, {kind: coupling, conditioner: {kind: conv, hidden: 4}}]\n"  # digits
LOCATED = re.compile(r"^\S+:\d+:\d+: \S+: ")  # file:line:col: field.path: message


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line(result, code: int = 2) -> str:
    """The single stderr line of a failed run, after checking the exit code and the absence of a
    traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _bomb(depth: int = 9) -> str:
    """A "billion laughs": 10 ** depth strings once every alias is written out, in about 1 KB."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, depth + 1)]
    return "\n".join(lines) + "\n" + OK


# ---- YAML bounds before expansion ---------------------------------------------------------------

@pytest.mark.parametrize("verb", ["validate", "report", "render"])
def test_alias_bomb_fails_fast(tmp_path, verb):
    path = _write(tmp_path, _bomb())
    assert len(path.read_bytes()) < 2048
    start = time.perf_counter()
    line = _one_line(_run(verb, path, *(["-o", tmp_path / "x.dot"] if verb == "render" else [])))
    assert time.perf_counter() - start < BOUND_S
    assert line.startswith(f"{path}:1:1: ") and f"more than {MAX_YAML_NODES:,} nodes" in line


def test_alias_bomb_memory_is_bounded(tmp_path):
    """Refusing the bomb costs about what the file costs, not its 10 ** 9 expanded nodes."""
    path = _write(tmp_path, _bomb())
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match="alias bomb"):
            flowspec.load_spec(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2 ** 20, binary_size(peak)


def test_a_long_flat_list_stops_at_the_node_limit(tmp_path, monkeypatch):
    """Composition stops at the limit: a flat list costs at most MAX_YAML_NODES nodes' time."""
    from flowspec.spec import yaml_source

    monkeypatch.setattr(yaml_source, "MAX_YAML_NODES", 1000)
    path = _write(tmp_path, OK + "x: [" + "1, " * 100_000 + "1]\n")
    line = _one_line(_run("validate", path))
    assert line.startswith(f"{path}:3:") and "the YAML has more than 1,000 nodes" in line
    loader = yaml_source.BoundedLoader(path.read_text())
    with pytest.raises(yaml_source._TooManyNodes):
        loader.get_single_node()
    assert loader.composed == 1001


def test_a_recursive_alias_is_one_line(tmp_path):
    line = _one_line(_run("validate", _write(tmp_path, "a: &a [1, *a]\n" + OK)))
    assert "an alias refers to a node that contains it" in line


def test_a_50_mb_layer_list_fails_fast(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("w") as stream:
        stream.write("input: {shape: [4]}\nlayers:\n")
        stream.write("  - scaling\n" * (50 * 2 ** 20 // 12))
    start = time.perf_counter()
    line = _one_line(_run("validate", path))
    assert time.perf_counter() - start < BOUND_S
    assert line.startswith(f"{path}: ") and f"larger than {MAX_SPEC_BYTES // 2 ** 20:.1f} MiB" in line


def test_special_files_are_refused_without_reading(tmp_path):
    """/dev/zero (endless), a folder, and a FIFO (which would block a plain open) each give one
    line. The FIFO runs in a subprocess with a timeout, so a regression fails instead of hanging."""
    line = _one_line(_run("validate", "/dev/zero"))
    assert line.startswith("/dev/zero: ") and "not a regular file" in line
    line = _one_line(_run("validate", tmp_path))
    assert line.startswith(f"{tmp_path}: ") and "is a folder" in line
    if not hasattr(os, "mkfifo"):
        return
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flowspec", "validate", str(fifo)], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert time.perf_counter() - start < 60
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"{fifo}: <root>: not a regular file (a FIFO, device or socket); "
                                                "a spec is read from a file"]


def test_non_utf8_spec_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n" + OK.encode())
    line = _one_line(_run("validate", path))
    assert line.startswith(f"{path}: ") and "not UTF-8" in line and "0xe9" in line


# ---- layer counts from the compact form ---------------------------------------------------------

BILLION = "input: {shape: [4]}\nlayers:\n  - scaling\n  - repeat: 1000000000\n    layers: [scaling]\n"
NESTED = """\
input: {shape: [4]}
layers:
  - repeat: 1000
    layers:
      - repeat: 1000
        layers:
          - repeat: 1000
            layers: [scaling, {kind: permute, order: reverse}]
"""
COMPACT = """\
input: {shape: [2, 8, 8]}
levels: 2
steps: 512
step:
  - repeat: 1000000
    layers: [actnorm]
"""


@pytest.mark.parametrize("text, line, field, count", [
    (BILLION, 4, "layers[1].repeat", 1 + 10 ** 9),
    (NESTED, 3, "layers[0].repeat", 2 * 10 ** 9),
    (COMPACT, 5, "step[0].repeat", 2 * (1 + 512 * 10 ** 6) + 1),
], ids=["billion", "nested", "compact"])
@pytest.mark.parametrize("verb", ["validate", "expand", "render", "report"])
def test_huge_layer_counts_fail_at_validate_fast(tmp_path, text, line, field, count, verb):
    path = _write(tmp_path, text)
    start = time.perf_counter()
    message = _one_line(_run(verb, path, *(["-o", tmp_path / "x.dot"] if verb == "render" else [])))
    assert time.perf_counter() - start < BOUND_S
    assert message.startswith(f"{path}:{line}:") and f" {field}: expands to {count:,} layers" in message
    assert f"limit of {MAX_LAYERS:,}" in message


def test_layer_count_is_computed_without_expanding():
    spec = flowspec.loads_spec(NESTED.replace("1000", "3"))
    assert layer_count(spec) == 54 == len(flowspec.expand(spec))
    tiny = flowspec.loads_spec("input: {shape: [1, 8, 8]}\nlevels: 2\nsteps: 3\nstep: [actnorm, "
                               "{repeat: 2, layers: [{kind: invconv}]}]\n")
    assert layer_count(tiny) == 2 * (1 + 3 * 3) + 1 == len(flowspec.expand(tiny))


def test_a_deep_plain_invconv_stack_validates_fast(tmp_path):
    """3000 plain invconvs are within the limit; their shape rules do no linear algebra."""
    path = _write(tmp_path, "input: {shape: [2, 4, 4]}\nlayers:\n  - repeat: 3000\n"
                            "    layers: [{kind: invconv, lu: false}]\n")
    start = time.perf_counter()
    result = _run("validate", path)
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < BOUND_S


# ---- names and build confinement ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute", "a/b", "..", ".hidden", "-flag", "a..b",
                                  "back\\\\slash", "x" * 129, "sp ace"])
def test_names_are_plain(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, f"name: {yaml.safe_dump(name).splitlines()[0]}\n" + OK)
    for verb in ("validate", "build"):
        line = _one_line(_run(verb, path))
        assert line.startswith(f"{path}:1:") and " name: " in line and "not a plain name" in line
    assert not (tmp_path / "build").exists() and not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("name", ["glow-digits", "v1.2_x", "Glow_64", "état"])
def test_plain_names_build_inside_the_output_folder(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, f"name: {name}\n" + OK)
    result = _run("build", path, "--no-export")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "build" / name / "model.pt").is_file()


def test_default_name_from_an_odd_file_name_is_plain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, OK, name="my spec (v2)...yaml")
    spec = flowspec.load_spec(path)
    assert spec.name == "my_spec__v2__"  # stem "my spec (v2).."
    assert named_folder(Path("build"), spec.name) == Path("build") / spec.name


def test_named_folder_refuses_an_escaping_name_made_in_python():
    spec = flowspec.loads_spec(OK).model_copy(update={"name": "../escaped"})  # model_copy skips validation
    with pytest.raises(SpecError, match="not a plain name"):
        named_folder(Path("build"), spec.name)


# ---- build refuses what cannot fit ---------------------------------------------------------------

HUGE = """\
name: huge
input: {shape: [3, 64, 64]}
levels: 3
steps: 32
step: [actnorm, {kind: invconv}, {kind: coupling, conditioner: {kind: conv, hidden: 100000}}]
"""


def test_build_refuses_a_model_past_memory_before_allocating(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, HUGE)
    start = time.perf_counter()
    line = _one_line(_run("build", path))
    assert time.perf_counter() - start < BOUND_S
    assert re.search(r"needs \d\.\d+ TiB of parameters \([\d,]+\); this machine has [\d.]+ \w+ available", line), line
    assert line.startswith(f"{path}:1:1: ") and not (tmp_path / "build").exists()


def test_memory_bound_uses_the_cost_report():
    graph = flowspec.build_graph(flowspec.loads_spec(OK))
    params = sum(p.numel() for p in flowspec.compile(graph).parameters())
    refuse_oversized(graph, available=2 ** 30)
    with pytest.raises(SpecError, match=rf"needs {binary_size(4 * params)} of parameters \({params:,}\)"):
        refuse_oversized(graph, available=4 * params)


# ---- every verb validates first ------------------------------------------------------------------

INVALID = [
    ("split-1-channel", "input: {shape: [1, 8, 8]}\nlayers: [actnorm, {kind: split}]\n", 2, "split needs at least 2 channels"),
    ("coupling-1-channel", "input: {shape: [1, 8, 8]}\nlayers:\n  - kind: coupling\n", 3, "needs at least 2 channels"),
    ("invconv-1-channel", "input: {shape: [1, 8, 8]}\nlayers: [{kind: invconv}]\n", 2, "invconv on 1 channel"),
    ("checkerboard-vector", "input: {shape: [4]}\nlayers:\n  - {kind: coupling, mask: checkerboard, conditioner: {kind: mlp}}\n",
     3, "checkerboard mask needs an image"),
    ("mlp-on-image", "input: {shape: [2, 8, 8]}\nlayers:\n  - {kind: coupling, conditioner: {kind: mlp}}\n", 3,
     "mlp conditioner works on vectors"),
    ("too-many-levels", "input: {shape: [1, 4, 4]}\nlevels: 3\nsteps: 1\nstep: [actnorm]\n", 2, "too many levels"),
    ("odd-before-squeeze", "input: {shape: [1, 7, 7]}\nlayers: [actnorm, squeeze]\n", 2, "squeeze needs even height and width"),
]


@pytest.mark.parametrize("text, line, message", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_check_validates_first(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    result = _run("check", path)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    first = result.stderr.strip().splitlines()[0]
    assert LOCATED.match(first) and first.startswith(f"{path}:{line}:") and message in first, first


@pytest.mark.parametrize("verb", ["validate", "expand", "build", "check", "render", "report", "train", "bench"])
def test_every_verb_gives_the_same_located_line(tmp_path, monkeypatch, verb):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, INVALID[0][1])
    line = _one_line(_run(verb, path))
    assert line == _one_line(_run("validate", path))
    assert LOCATED.match(line) and line.startswith(f"{path}:2:")
    assert not (tmp_path / "build").exists() and not (tmp_path / "runs").exists()


# ---- output paths: one boundary ------------------------------------------------------------------

@pytest.fixture
def model_file(tmp_path) -> Path:
    from flowspec.compile.export import save_model

    path = tmp_path / "model.pt"
    save_model(flowspec.compile(flowspec.loads_spec(OK)), path)
    return path


def _output_commands(tmp_path: Path, spec: Path, model: Path, out: Path) -> dict[str, list]:
    return {"render": ["render", spec, "-o", out / "flow.svg"],
            "build": ["build", spec, "-o", out / "built", "--no-export"],
            "schema": ["schema", "-o", out / "schema.json"],
            "sample": ["sample", model, "-n", "2", "-o", out / "samples.npy"],
            "train": ["train", spec, "--steps", "1", "--out", out / "run", "--no-progress", "--device", "cpu"]}


@pytest.mark.parametrize("verb", ["render", "build", "schema", "sample", "train"])
def test_output_under_a_file_is_one_line(tmp_path, model_file, verb):
    spec = _write(tmp_path, OK)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = _one_line(_run(*_output_commands(tmp_path, spec, model_file, blocker)[verb]))
    assert line.startswith("error: ") and str(blocker) in line
    assert "a file of that name is in the way" in line or "is a file, not a folder" in line


def test_missing_parent_is_one_line_or_created(tmp_path, model_file):
    """Folders are created when they can be (render, build, sample, train); schema writes one file
    and says its folder is missing."""
    line = _one_line(_run("schema", "-o", tmp_path / "no" / "such" / "schema.json"))
    assert line == f"error: {tmp_path / 'no' / 'such' / 'schema.json'}: no such file or folder (does its parent folder exist?)"
    result = _run("render", _write(tmp_path, OK), "-o", tmp_path / "new" / "flow.dot")
    assert result.exit_code == 0 and (tmp_path / "new" / "flow.dot").is_file()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
@pytest.mark.parametrize("verb", ["render", "build", "schema", "sample", "train"])
def test_read_only_output_folder_is_one_line(tmp_path, model_file, verb):
    spec = _write(tmp_path, OK)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = _one_line(_run(*_output_commands(tmp_path, spec, model_file, locked)[verb]))
    finally:
        locked.chmod(0o755)
    assert line.startswith("error: ") and str(locked) in line and "permission denied" in line


def test_permission_denied_is_one_line(tmp_path, monkeypatch):
    """As root the chmod test above is skipped; the same line comes from the refused write here."""
    target = tmp_path / "schema.json"

    real_open = os.open

    def denied(path, *args, **kwargs):
        if Path(path) == target:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    assert _one_line(_run("schema", "-o", target)) == f"error: {target}: permission denied"


def test_train_checks_its_folder_before_loading_data(tmp_path, monkeypatch):
    import flowspec.data

    def never(*args, **kwargs):
        raise AssertionError("the data were loaded before the run folder was checked")

    monkeypatch.setattr(flowspec.data, "load_data", never)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    line = _one_line(_run("train", _write(tmp_path, OK), "--out", tmp_path / "run" / "a"))
    assert line == f"error: {tmp_path}: permission denied"


def test_disk_full_is_one_line(tmp_path, monkeypatch):
    target = tmp_path / "schema.json"

    import io

    import flowspec.files

    class Full(io.StringIO):
        def write(self, text):  # what a full disk answers: an errno, no file name
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(flowspec.files.os, "fdopen", lambda *args, **kwargs: Full())
    line = _one_line(_run("schema", "-o", target))
    assert line == f"error: {target}: no space left on the device (the disk is full)"


# ---- small ones ---------------------------------------------------------------------------------

def test_no_arguments_prints_the_help():
    result = _run()
    assert result.exit_code == 0
    assert "Usage" in result.stdout and "validate" in result.stdout and "train" in result.stdout


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "-inf"])
def test_sample_temperature_is_finite_and_not_negative(tmp_path, value):
    line = _one_line(_run("sample", tmp_path / "never-read.pt", f"--temperature={value}"))
    assert line.startswith(f"error: --temperature {float(value):g}: a temperature is a finite number >= 0")


def test_train_temperature_is_finite(tmp_path):
    line = _one_line(_run("train", _write(tmp_path, OK), "--temperature=inf", "--out", tmp_path / "run"))
    assert "a temperature is a finite number" in line and not (tmp_path / "run").exists()


def test_eval_k_is_bounded(tmp_path):
    from flowspec.cli.train import MAX_IMPORTANCE_SAMPLES

    start = time.perf_counter()
    line = _one_line(_run("eval", tmp_path / "never-read.pt", "-k", "1000000"))
    assert time.perf_counter() - start < BOUND_S
    assert line == f"error: -k 1000000: at most {MAX_IMPORTANCE_SAMPLES} importance samples (each one is a pass over the test set)"


@pytest.mark.parametrize("content, located, message", [
    (b"mygpu: {peak_flops: {float32: 1.0e13}, bandwidth: 5.0e11, memory: 1}\n", ":1:", "mygpu.memory: 1 bytes is outside"),
    (b"mygpu:\n  peak_flops: {float32: .nan}\n  bandwidth: 5.0e11\n  memory: 1.6e10\n", ":2:", "mygpu.peak_flops.float32: nan FLOP/s"),
    (b"mygpu:\n  peak_flops: {float32: 1e40}\n  bandwidth: 5.0e11\n  memory: 1.6e10\n", ":2:", "1e+40 FLOP/s is outside"),
    (b"mygpu: {peak_flops: {float32: 1.0e13}, bandwidth: 5.0e11, memory: 1.6e10, latency: -1}\n", ":1:", "mygpu.latency: -1 s"),
    (b"mygpu: {peak_flops: {float32: 1.0e13}}\xff\n", "", "not UTF-8 text (byte 0xff"),
], ids=["memory-1-byte", "nan-peak", "absurd-peak", "negative-latency", "not-utf8"])
def test_device_file_nonsense_is_one_located_line(tmp_path, content, located, message):
    devices = tmp_path / "devices.yaml"
    devices.write_bytes(content)
    line = _one_line(_run("report", _write(tmp_path, OK), "--devices", devices, "--device", "mygpu"))
    assert line.startswith(f"error: {devices}{located}") and message in line, line


def test_a_saved_model_with_an_old_style_name_still_loads(model_file):
    """Models saved before names were checked may hold any name; loading makes it plain."""
    import torch

    data = torch.load(model_file, weights_only=True)
    data["spec"]["name"] = "my glow/../v1"
    del data["checksum"]  # such files predate checksums too (a changed name breaks the checksum)
    torch.save(data, model_file)
    assert flowspec.load_model(model_file).spec.name == "my_glow___v1"


# ---- the verbs, enumerated from the typer app (a new verb is covered when it is added) ----------

def _verbs() -> dict[str, dict[str, tuple]]:
    """``{verb: {parameter: (type, typer info)}}`` of every command of the app."""
    from typing import Annotated, get_args, get_origin, get_type_hints

    found = {}
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        params = {}
        for parameter, hint in get_type_hints(info.callback, include_extras=True).items():
            if get_origin(hint) is Annotated:
                base, meta = get_args(hint)[0], get_args(hint)[1]
                params[parameter] = (base, meta)
        found[name] = params
    return found


VERBS = _verbs()
SET_VERBS = sorted(verb for verb, params in VERBS.items() if "overrides" in params)
#: verbs that read a spec but build no model (every other --set verb builds one)
NO_MODEL_VERBS = {"validate", "expand", "render", "report"}
MODEL_VERBS = sorted(set(SET_VERBS) - NO_MODEL_VERBS)
#: verbs that read a latents .npz (an argument whose help says so)
LATENT_VERBS = sorted(verb for verb, params in VERBS.items()
                      if any(isinstance(info, typer.models.ArgumentInfo) and "latents .npz" in (info.help or "")
                             for _, info in params.values()))
CHECKPOINT_VERBS = sorted(verb for verb, params in VERBS.items() if "checkpoint" in params)


def _spec_args(verb: str, spec: Path, tmp_path: Path) -> list:
    """``VERB SPEC`` with options that keep its outputs under ``tmp_path``."""
    extra = {"render": ["-o", tmp_path / "flow.svg"], "build": ["-o", tmp_path / "built", "--no-export"],
             "train": ["--out", tmp_path / "run", "--steps", "1", "--no-progress"],
             "bench": ["--repeats", "1", "--no-baselines", "--no-memory"]}
    return [verb, spec, *extra.get(verb, [])]


def test_the_verb_lists_are_not_empty():
    assert {"validate", "build", "train", "check", "bench"} <= set(SET_VERBS)
    assert {"build", "check", "train", "bench"} <= set(MODEL_VERBS)
    assert {"decode", "interpolate", "manipulate"} <= set(LATENT_VERBS)


@pytest.mark.parametrize("verb", SET_VERBS)
def test_set_alias_bomb_is_refused_fast_on_every_spec_verb(tmp_path, monkeypatch, verb):
    """A 1 KB alias bomb as a --set value gets the spec file's node bound (it used to run 30 s
    to a MemoryError at 2.7 GB)."""
    monkeypatch.chdir(tmp_path)
    bomb = "{" + ", ".join(_bomb().splitlines()[:10]) + "}"
    start = time.perf_counter()
    line = _one_line(_run(*_spec_args(verb, _write(tmp_path, OK), tmp_path), "--set", f"name={bomb}"))
    assert time.perf_counter() - start < BOUND_S
    assert line.startswith("--set name={a0: &a0 [lol") and "...: name: " in line
    assert f"more than {MAX_YAML_NODES:,} nodes" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # nothing written


@pytest.mark.parametrize("verb", SET_VERBS)
def test_set_value_past_the_byte_bound_is_refused(tmp_path, monkeypatch, verb):
    monkeypatch.chdir(tmp_path)
    value = "x" * (MAX_SPEC_BYTES + 1)
    line = _one_line(_run(*_spec_args(verb, _write(tmp_path, OK), tmp_path), "--set", f"name={value}"))
    assert len(line) < 400 and "name: the value is 2.0 MiB; a value is at most 2.0 MiB" in line


@pytest.mark.parametrize("verb", SET_VERBS)
@pytest.mark.parametrize("override, field", [
    ("training.temperature=.inf", "training.temperature"), ("training.weight_decay=.inf", "training.weight_decay"),
    ("training.lr=.nan", "training.lr"), ("layers[2].conditioner.hidden=.inf", "layers[2].conditioner.hidden")])
def test_set_infinity_is_refused_on_every_spec_verb(tmp_path, monkeypatch, verb, override, field):
    monkeypatch.chdir(tmp_path)
    result = _run(*_spec_args(verb, _write(tmp_path, OK), tmp_path), "--set", override)
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"--set {override}: {field}: " in result.stderr


INFINITE = [
    ("spline bound", "input: {shape: [4]}\nlayers:\n  - {kind: coupling, transform: {kind: spline, bound: .inf}}\n",
     3, "layers[0].transform.bound"),
    ("batchnorm eps", "input: {shape: [4]}\nlayers:\n  - {kind: batchnorm, eps: .inf}\n", 3, "layers[0].eps"),
    ("temperature", "input: {shape: [4]}\nlayers: [scaling]\ntraining:\n  temperature: .inf\n", 4,
     "training.temperature"),
    ("weight decay", "input: {shape: [4]}\nlayers: [scaling]\ntraining:\n  weight_decay: .inf\n", 4,
     "training.weight_decay"),
]


@pytest.mark.parametrize("text, line, field", [case[1:] for case in INFINITE], ids=[case[0] for case in INFINITE])
def test_infinity_passes_no_bound(tmp_path, text, line, field):
    spec = _write(tmp_path, text)
    out = _one_line(_run("validate", spec))
    assert re.match(rf"{re.escape(str(spec))}:{line}:\d+: {re.escape(field)}: Input should be a finite number", out), out


def test_a_continuous_vae_is_refused_at_validation(tmp_path):
    text = (ROOT / "specs" / "vae-iaf-digits.yaml").read_text().replace("levels: 17", "data: continuous")
    assert "data: continuous" in text
    spec = _write(tmp_path, text)
    line = _one_line(_run("validate", spec))
    assert line.startswith(f"{spec}:6:1: input: a VAE's likelihood") and "needs a flow spec" in line


# ---- text the terminal would rewrite -------------------------------------------------------------

@pytest.mark.parametrize("verb", SET_VERBS)
def test_messages_print_the_users_text_exactly(tmp_path, monkeypatch, verb):
    """rich reads ':100:' as an emoji code and '[bold]' as markup; neither may touch a message."""
    monkeypatch.chdir(tmp_path)
    kind = ":smile: [bold]x[/bold] :100:"
    spec = _write(tmp_path, "input: {shape: [4]}\nlayers:\n" + "  - scaling\n" * 97 + f"  - {{kind: '{kind}'}}\n")
    result = _run(*_spec_args(verb, spec, tmp_path), "--set", "name=:100:")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    first, second = result.stderr.strip().splitlines()
    assert first == "--set name=:100:: name: Input should be a valid string"
    assert second.startswith(f"{spec}:100:6: layers[97].kind: unknown kind {kind!r} (hint: known: ")


def test_a_latents_error_prints_a_file_name_exactly(tmp_path, model_file):
    path = tmp_path / ":100: [red]x.npz"
    path.write_bytes(b"not a zip")
    line = _one_line(_run("decode", model_file, path, "-o", tmp_path / "d.png"))
    assert line.startswith(f"error: {path}: not a readable .npz (")


# ---- no file is written through a symbolic link --------------------------------------------------

@pytest.fixture
def latents_file(tmp_path, model_file) -> Path:
    path = tmp_path / "latents.npz"
    result = _run("encode", model_file, "--data", "digits", "--index", "1,2", "-o", path, "--no-progress")
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def plane_model(tmp_path) -> Path:
    """A 2-D continuous model (plot-density's kind)."""
    from flowspec.compile.export import save_model

    path = tmp_path / "plane.pt"
    save_model(flowspec.compile(flowspec.loads_spec(
        "input: {shape: [2], data: continuous}\nlayers: [actnorm, {kind: coupling, conditioner: {kind: mlp, hidden: [4]}}]\n")), path)
    return path


#: (verb, the path planted as a link, relative to OUT, and the arguments); {spec}, {model}, {latents},
#: {plane} and {out} are filled in. Every file or folder each verb creates is here.
LINK_CASES = [
    ("train", "run/.lock", ["train", "{spec}", "--steps", "2", "--out", "{out}/run", "--no-progress"]),
    ("train", "run/metrics.jsonl", ["train", "{spec}", "--steps", "2", "--out", "{out}/run", "--no-progress"]),
    ("train", "run/last.pt", ["train", "{spec}", "--steps", "2", "--out", "{out}/run", "--no-progress"]),
    ("train", "run/best.pt", ["train", "{spec}", "--steps", "2", "--eval-every", "1", "--out", "{out}/run", "--no-progress"]),
    ("train", "run/samples", ["train", "{spec}", "--steps", "2", "--sample-every", "1", "--out", "{out}/run", "--no-progress"]),
    ("train", "run/samples/step000001.png", ["train", "{spec}", "--steps", "2", "--sample-every", "1", "--out", "{out}/run", "--no-progress"]),
    ("build", "built/expanded.yaml", ["build", "{spec}", "-o", "{out}/built", "--no-export"]),
    ("build", "built/model.pt", ["build", "{spec}", "-o", "{out}/built", "--no-export"]),
    ("build", "built/report.md", ["build", "{spec}", "-o", "{out}/built", "--no-export"]),
    ("build", "built/diagram.svg", ["build", "{spec}", "-o", "{out}/built", "--no-export"]),
    ("build", "built", ["build", "{spec}", "-o", "{out}/built", "--no-export"]),
    ("render", "flow.dot", ["render", "{spec}", "-o", "{out}/flow.dot"]),
    ("render", "flow.svg", ["render", "{spec}", "-o", "{out}/flow.svg"]),
    ("schema", "schema.json", ["schema", "-o", "{out}/schema.json"]),
    ("sample", "samples.png", ["sample", "{model}", "-n", "2", "-o", "{out}/samples.png"]),
    ("sample", "samples.npy", ["sample", "{model}", "-n", "2", "-o", "{out}/samples.npy"]),
    ("sample", "samples.csv", ["sample", "{model}", "-n", "2", "-o", "{out}/samples.csv"]),
    ("plot-density", "density.png", ["plot-density", "{plane}", "--no-points", "--size", "16", "-o", "{out}/density.png"]),
    ("encode", "latents.npz", ["encode", "{model}", "--data", "digits", "--index", "1", "-o", "{out}/latents.npz"]),
    ("decode", "decoded.png", ["decode", "{model}", "{latents}", "-o", "{out}/decoded.png"]),
    ("decode", "decoded.npy", ["decode", "{model}", "{latents}", "-o", "{out}/decoded.png"]),
    ("decode", "decoded.continuous.npy", ["decode", "{model}", "{latents}", "--continuous", "-o", "{out}/decoded.png"]),
    ("reconstruct", "reconstruct.png", ["reconstruct", "{model}", "--data", "digits", "--index", "1", "-o", "{out}/reconstruct.png"]),
    ("interpolate", "interpolate.png", ["interpolate", "{model}", "{latents}", "{latents}", "--steps", "2", "-o", "{out}/interpolate.png"]),
    ("interpolate", "interpolate.npy", ["interpolate", "{model}", "{latents}", "{latents}", "--steps", "2", "-o", "{out}/interpolate.npy"]),
    ("manipulate", "manipulate.png", ["manipulate", "{model}", "{latents}", "--toward", "1", "--away", "2", "--data", "digits", "-o", "{out}/manipulate.png"]),
    ("manipulate", "direction.npz", ["manipulate", "{model}", "{latents}", "--toward", "1", "--away", "2", "--data", "digits", "--save-direction", "{out}/direction.npz", "-o", "{out}/m.png"]),
    ("plot", "training.png", ["plot", "{run}", "-o", "{out}/training.png"]),
    ("export", "model.safetensors", ["export", "{model}", "--format", "safetensors", "-o", "{out}/model.safetensors"]),
    ("export", "pt2", ["export", "{model}", "--format", "pt2", "-o", "{out}/pt2"]),
    ("export", "onnx/density.onnx", ["export", "{model}", "--format", "onnx", "-o", "{out}/onnx"]),
    ("export", "onnx/sample.onnx", ["export", "{model}", "--format", "onnx", "-o", "{out}/onnx"]),
    ("export", "onnx", ["export", "{model}", "--format", "onnx", "-o", "{out}/onnx"]),
]
#: verbs that write nothing (they print)
PRINTING_VERBS = {"validate", "expand", "check", "eval", "bench", "report", "pretrained"}


def _metrics_run(tmp_path: Path) -> Path:
    """A run folder holding only a two-line metrics.jsonl (what `flowspec plot` reads)."""
    run = tmp_path / "logged-run"
    run.mkdir()
    run.joinpath("metrics.jsonl").write_text(
        '{"step": 10, "loss": 3.0, "bpd": 3.0, "bpd_avg": 3.1, "lr": 0.001, "grad_norm": 2.0, "seconds": 1.0}\n'
        '{"step": 10, "test_bpd": 3.2}\n')
    return run


def test_every_verb_that_writes_has_link_cases():
    assert set(VERBS) == {case[0] for case in LINK_CASES} | PRINTING_VERBS


@pytest.mark.parametrize("planted", ["file", "dangling"])
@pytest.mark.parametrize("verb, link, args", LINK_CASES, ids=[f"{case[0]}:{case[1]}" for case in LINK_CASES])
def test_no_file_is_written_through_a_link(tmp_path, monkeypatch, model_file, latents_file, plane_model,
                                           verb, link, args, planted):
    """A link planted where flowspec writes (the run lock, a checkpoint, an export, a folder it
    makes) is refused in one line; the link's target, outside the output folder, is untouched (or
    for a dangling link, never created)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "target"
    if planted == "file":
        target.write_text("precious\n")
    if "." not in Path(link).name and planted == "file":  # a folder flowspec makes
        target = outside / "folder"
        target.mkdir()
    place = out / link
    place.parent.mkdir(parents=True, exist_ok=True)
    place.symlink_to(target)
    values = {"spec": _write(tmp_path, OK), "model": model_file, "latents": latents_file, "plane": plane_model,
              "out": out, "run": _metrics_run(tmp_path)}
    line = _one_line(_run(*[a.format(**values) for a in args]))
    assert line.startswith("error: ") and "is a symbolic link; flowspec does not write through links" in line
    if target.is_dir():
        assert list(target.iterdir()) == []
    elif planted == "file":
        assert target.read_text() == "precious\n"
    else:
        assert not target.exists()
    assert place.is_symlink()


def test_the_file_helpers_refuse_links(tmp_path):
    from flowspec.files import LinkRefused, make_folder, open_for_writing, replace_atomically, write_text

    (tmp_path / "target").write_text("precious")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for write in (lambda p: write_text(p, "x"), lambda p: open_for_writing(p, "a").close(),
                  lambda p: replace_atomically(p).__enter__(), make_folder):
        for name in ("link", "dangling"):
            with pytest.raises(LinkRefused, match="is a symbolic link"):
                write(tmp_path / name)
    assert (tmp_path / "target").read_text() == "precious" and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "link", "target"]  # no temporary left


# ---- latent and direction files ------------------------------------------------------------------

def _bad_latents(base: dict, case: str) -> dict:
    z = base["z0"]
    changed = {"nan": {"z0": np.where(np.arange(z.size).reshape(z.shape) == 5, np.nan, z)},
               "inf": {"z0": np.full_like(z, np.inf)},
               "complex": {"z0": z.astype(np.complex64)},
               "strings": {"z0": np.array([["a"] * 3] * 2)},
               "zero rows": {"z0": z[:0], "log_density": base["log_density"][:0]},
               "0-d": {"z0": np.array(1.5)},
               "one row short": {"log_density": base["log_density"][:1]},
               "object": {"z0": np.array([1, "a"], dtype=object)}}[case]
    return {**base, **changed}


LATENT_CASES = {"nan": "z0 holds NaN or infinite values (row 0)", "inf": "z0 holds NaN or infinite values (row 0)",
                "complex": "z0 holds complex numbers (complex64); latents are real numbers",
                "strings": "z0 holds strings (<U1); latents are real numbers",
                "zero rows": "z0 has shape [0, 4, 4, 4]; it holds at least one row",
                "0-d": "z0 is a single number (0-d)",
                "one row short": "log_density has shape [1]; it holds one number per example, [2]",
                "object": "not a readable .npz (ValueError)"}


def _latent_args(verb: str, model: Path, path: Path, good: Path, out: Path) -> list:
    """``VERB MODEL`` reading ``path`` where it takes a latents file."""
    return {"decode": ["decode", model, path, "-o", out],
            "interpolate": ["interpolate", model, good, path, "--steps", "2", "-o", out],
            "manipulate": ["manipulate", model, path, "--direction", "{direction}", "-o", out]}[verb]


@pytest.fixture
def direction_file(tmp_path, model_file, latents_file) -> Path:
    path = tmp_path / "direction.npz"
    result = _run("manipulate", model_file, latents_file, "--toward", "1", "--away", "2", "--data", "digits",
                  "--save-direction", path, "-o", tmp_path / "m.png", "--no-progress")
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize("verb", LATENT_VERBS)
@pytest.mark.parametrize("case", sorted(LATENT_CASES))
def test_bad_latents_are_one_line_on_every_latent_verb(tmp_path, model_file, latents_file, direction_file, verb, case):
    base = dict(np.load(latents_file))
    bad = tmp_path / "bad.npz"
    np.savez(bad, **_bad_latents(base, case)) if case != "object" else bad.write_bytes(_object_npz(base))
    out = tmp_path / "out.png"
    args = [str(a).replace("{direction}", str(direction_file)) for a in _latent_args(verb, model_file, bad, latents_file, out)]
    line = _one_line(_run(*args))
    assert line.startswith(f"error: {bad}: ") and LATENT_CASES[case] in line, line
    assert not out.exists()


def _object_npz(base: dict) -> bytes:
    """An .npz whose z0 is a pickled object array (refused: latents are read without pickle)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **{**base, "z0": np.array([1, "a"], dtype=object)})
    return buffer.getvalue()


DIRECTION_CASES = {
    "batch": ({"d0": "rows"}, "d0 has 3 rows; a direction is one row per latent"),
    "nan": ({"d0": "nan"}, "d0 holds NaN or infinite values (row 0)"),
    "counts text": ({"counts": np.array(["a", "b"])}, "counts is <U1 of shape [2]"),
    "counts shape": ({"counts": np.zeros((2, 2), dtype=np.int64)}, "counts is int64 of shape [2, 2]"),
    "counts negative": ({"counts": np.array([-1, 2])}, "two integers >= 0"),
    "toward array": ({"toward": np.arange(3)}, "toward is int64 of shape [3]"),
}


@pytest.mark.parametrize("case", sorted(DIRECTION_CASES))
def test_bad_directions_are_one_line(tmp_path, model_file, latents_file, direction_file, case):
    base = dict(np.load(direction_file))
    change, message = DIRECTION_CASES[case]
    change = dict(change)
    if change.get("d0") == "rows":
        change["d0"] = np.repeat(base["d0"], 3, axis=0)
    elif change.get("d0") == "nan":
        change["d0"] = np.full_like(base["d0"], np.nan)
    bad = tmp_path / "bad-direction.npz"
    np.savez(bad, **{**base, **change})
    line = _one_line(_run("manipulate", model_file, latents_file, "--direction", bad, "-o", tmp_path / "m.png"))
    assert line.startswith(f"error: {bad}: ") and message in line, line


def test_a_compressed_latents_bomb_is_measured_before_reading(tmp_path, model_file, latents_file, monkeypatch):
    import importlib

    latents = importlib.import_module("flowspec.core.latents")
    monkeypatch.setattr(latents, "MAX_LATENT_FILE_BYTES", 1 << 20)
    base = dict(np.load(latents_file))
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, **{**base, "z0": np.zeros((4096, 4, 4, 4), dtype=np.float32)})
    assert bomb.stat().st_size < 20_000
    line = _one_line(_run("decode", model_file, bomb, "-o", tmp_path / "d.png"))
    assert line == f"error: {bomb}: its arrays take 1.0 MiB once read; a latents or direction file is at most 1 MiB"


@pytest.mark.parametrize("args, message", [
    (["encode", "{model}", "--data", "digits", "--index", "²", "-o", "{out}/l.npz"], "--index '²': integers"),
    (["reconstruct", "{model}", "--data", "digits", "--index", "1,²", "-o", "{out}/r.png"], "--index '1,²': integers"),
    (["encode", "{model}", "--data", "digits", "²", "-o", "{out}/l.npz"], "²: no such file"),
    (["manipulate", "{model}", "--data", "digits", "--index", "1", "--toward", "²", "--away", "1", "-o", "{out}/m.png"],
     "--toward '²': unknown class"),
    (["manipulate", "{model}", "--data", "digits", "--index", "1", "--toward", "1", "--away", "٣", "-o", "{out}/m.png"],
     "--away '٣': unknown class"),
], ids=["encode-index", "reconstruct-index", "encode-input", "toward", "away-arabic"])
def test_non_ascii_digits_are_not_indices(tmp_path, model_file, args, message):
    """'²'.isdigit() is True and int('²') fails; '٣' is a digit int() reads: neither is an index."""
    line = _one_line(_run(*[a.format(model=model_file, out=tmp_path) for a in args]))
    assert message in line, line


# ---- sizes -----------------------------------------------------------------------------------------

#: integer options bounded in the command's code rather than by typer (the bound is in their help)
BOUNDED_IN_CODE = {("eval", "k"), ("sample", "label")}  # -k: 4096; --class: the model's classes


def _limits_section() -> str:
    guide = (ROOT / "docs" / "guide.md").read_text()
    return guide.split("## Limits and errors", 1)[1].split("\n## ", 1)[0]


def _integer_options():
    from typing import get_args

    for verb, params in sorted(VERBS.items()):
        for name, (base, info) in sorted(params.items()):
            if isinstance(info, typer.models.OptionInfo) and int in (base, *get_args(base)):
                declared = [d for d in (info.default, *info.param_decls) if isinstance(d, str) and d.startswith("-")]
                flag = declared[0] if declared else "--" + name.replace("_", "-")
                yield verb, name, flag, info


@pytest.mark.parametrize("verb, name, flag, info", list(_integer_options()),
                         ids=[f"{v}{f}" for v, _, f, _ in _integer_options()])
def test_every_size_option_is_bounded_and_documented(verb, name, flag, info):
    """Each integer option of each verb has an upper bound (shown in --help by typer) and the guide's
    limits section names it."""
    assert info.max is not None or (verb, name) in BOUNDED_IN_CODE, f"{verb} {flag} has no upper bound"
    if (verb, name) not in BOUNDED_IN_CODE:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", _limits_section()), f"{flag} not in the guide's limits"
        wide = runner.invoke(app, [verb, "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"}).output
        squeezed = re.sub(r"[\s│,]", "", wide)
        assert f"<={info.max}]" in squeezed, squeezed


def test_interpolate_steps_past_the_bound_are_refused(tmp_path, model_file):
    result = _run("interpolate", model_file, "1", "2", "--steps", "1000000000", "--data", "digits")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--steps'" in result.output and "1024" in result.output
    result = _run("interpolate", model_file, "1", "2", "--steps", "1e30", "--data", "digits")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_interpolate_pairs_times_steps_are_bounded(tmp_path, model_file):
    latents = tmp_path / "five.npz"
    assert _run("encode", model_file, "--data", "digits", "--index", "1,2,3,4,5", "-o", latents).exit_code == 0
    out = tmp_path / "i.png"
    line = _one_line(_run("interpolate", model_file, latents, latents, "--steps", "1000", "-o", out))
    assert line == "error: interpolate: 5 pairs x --steps 1000: 5,000 examples; at most 4,096 in one run"
    assert not out.exists()


def test_manipulate_strengths_are_bounded(tmp_path, model_file, latents_file):
    many = ",".join(["0.5"] * 65)
    line = _one_line(_run("manipulate", model_file, latents_file, "--toward", "1", "--away", "2",
                          "--strengths", many, "-o", tmp_path / "m.png"))
    assert line == "error: --strengths: 65 values; at most 64"


def test_per_class_times_classes_is_bounded(tmp_path):
    from flowspec.compile.export import save_model

    model = tmp_path / "many-classes.pt"
    save_model(flowspec.compile(flowspec.loads_spec(
        "input: {shape: [4], data: continuous}\ncondition: {kind: class, classes: 100000, embed: 2}\n"
        "layers: [{kind: coupling, conditioner: {kind: mlp, hidden: [4]}}]\n")), model)
    out = tmp_path / "s.npy"
    start = time.perf_counter()
    line = _one_line(_run("sample", model, "--per-class", "1024", "-o", out))
    assert time.perf_counter() - start < BOUND_S
    assert line == "error: --per-class 1024 x 100,000 classes is 102,400,000 samples; at most 4,096 in one run"
    assert not out.exists()


CHECK_HUGE = {
    "wide vector": ("input: {shape: [100000], data: continuous}\n"
                    "layers: [{kind: coupling, conditioner: {kind: mlp, hidden: [8]}}]\n", "100,000 x 100,000 Jacobian"),
    "huge condition": ("input: {shape: [4], data: continuous}\ncondition: {kind: vector, dim: 1000000000}\n"
                       "layers: [{kind: coupling, conditioner: {kind: mlp, hidden: [8]}}]\n", "parameters"),
}


@pytest.mark.parametrize("case", sorted(CHECK_HUGE))
def test_check_refuses_a_narrow_copy_past_memory(tmp_path, case):
    text, message = CHECK_HUGE[case]
    spec = _write(tmp_path, text)
    start = time.perf_counter()
    line = _one_line(_run("check", spec))
    assert time.perf_counter() - start < BOUND_S
    assert line.startswith(f"{spec}:1:1: <root>: the narrow float64 copy that `check` builds needs ") and message in line


@pytest.mark.parametrize("verb", MODEL_VERBS)
def test_every_model_verb_refuses_a_model_past_memory(tmp_path, monkeypatch, verb):
    """A model whose weights cannot fit is refused before allocation by every verb that builds one."""
    monkeypatch.chdir(tmp_path)
    spec = _write(tmp_path, "input: {shape: [100000], levels: 256}\n"
                            "layers: [{kind: coupling, conditioner: {kind: mlp, hidden: [100000, 100000, 100000]}}]\n")
    start = time.perf_counter()
    result = _run(*_spec_args(verb, spec, tmp_path))
    assert time.perf_counter() - start < 3 * BOUND_S
    line = _one_line(result)
    assert line.startswith(f"{spec}:1:1: <root>: ") and "this machine has" in line and "available" in line


# ---- CSV tables ------------------------------------------------------------------------------------

PLANE_SPEC = "input: {shape: [2], data: continuous}\nlayers: [actnorm, {kind: coupling, conditioner: {kind: mlp, hidden: [4]}}]\n"


def _csv_args(verb: str, tmp_path: Path, table: Path, plane_model: Path, *columns) -> list:
    """``VERB`` reading ``table`` as its CSV data (train: a fresh run; eval: a saved 2-D model)."""
    if verb == "train":
        return ["train", _write(tmp_path, PLANE_SPEC, "plane.yaml"), "--data", "csv", "--data-dir", table,
                "--steps", "1", "--out", tmp_path / "run", "--no-progress", *columns]
    return ["eval", plane_model, "--data", "csv", "--data-dir", table]


def _wide_header(columns: int) -> str:
    return ",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join("1" for _ in range(columns)) + "\n"


CSV_CASES = {
    "million columns": (lambda: _wide_header(1_000_000), "{table}:1: the header has 1,000,000 columns; a table has at most 10,000"),
    "wide row": (lambda: "a,b\n1,2\n" + ",".join(["1"] * 200_000) + "\n", "{table}:3: 200,000 fields, the header has 2"),
    "label past int64": (lambda: "a,b,y\n1,2,0\n1,2,99999999999999999999999\n3,4,1\n",
                         "{table}:3: column 'y': label 99999999999999999999999 is larger than 2,147,483,647"),
    "column named twice": (lambda: "a,b,a\n1,2,3\n4,5,6\n", "{table}:1: columns named twice: ['a']"),
}


@pytest.mark.parametrize("verb, case", [(verb, case) for case in sorted(CSV_CASES) for verb in ("train", "eval")
                                        if not (verb == "eval" and case == "label past int64")])  # eval: no label column
def test_hostile_csv_tables_are_one_line_fast(tmp_path, plane_model, verb, case):
    """A 9.9 MB header of a million columns used to take hours (a quadratic lookup)."""
    make, message = CSV_CASES[case]
    table = tmp_path / "table.csv"
    table.write_text(make())
    columns = ["--label-column", "y"] if case == "label past int64" else []
    start = time.perf_counter()
    line = _one_line(_run(*_csv_args(verb, tmp_path, table, plane_model, *columns)))
    assert time.perf_counter() - start < BOUND_S
    assert line.startswith("error: " + message.format(table=table)), line
    assert not (tmp_path / "run").exists()


def test_the_header_lookup_is_linear(tmp_path):
    """10,000 columns (the bound) read in about the time of a few hundred: no quadratic lookup."""
    from flowspec.data.table import read_table

    table = tmp_path / "wide.csv"
    table.write_text(_wide_header(10_000) + "\n".join(",".join("2" for _ in range(10_000)) for _ in range(3)) + "\n")
    start = time.perf_counter()
    x, *_ = read_table(table)
    assert x.shape == (4, 10_000) and time.perf_counter() - start < 1.0


@pytest.mark.parametrize("option", ["--features", "--context-columns"])
def test_a_column_named_twice_on_the_command_line_is_refused(tmp_path, option):
    table = tmp_path / "t.csv"
    table.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9\n")
    line = _one_line(_run("train", _write(tmp_path, PLANE_SPEC, "plane.yaml"), "--data", "csv", "--data-dir", table,
                          option, "a,a", "--steps", "1", "--out", tmp_path / "run", "--no-progress"))
    assert line == f"error: {option}: columns named twice: ['a']"


# ---- images in and out -------------------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["encode", "reconstruct"])
@pytest.mark.parametrize("image", ["grey16", "rgb16"])
def test_a_16_bit_png_is_refused_not_clipped(tmp_path, model_file, verb, image):
    from PIL import Image

    path = tmp_path / f"{image}.png"
    if image == "grey16":
        Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(path)
        expected = "16-bit pixels (I;16"
    else:
        _write_rgb16_png(path, 8, 8)
        expected = "16-bit pixels (RGB, raw RGB;16B)"
    line = _one_line(_run(verb, model_file, path, "-o", tmp_path / "out.npz"))
    assert line.startswith(f"error: {path}: {expected}") and "would clip these" in line


def _write_rgb16_png(path: Path, width: int, height: int) -> None:
    """A 48-bit RGB PNG written by hand (Pillow cannot write one; it opens it as 8-bit RGB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xff\x00" * 3 * width for _ in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("output, message", [  # a matplotlib figure: .png, .svg or .pdf
    ("x.txt", "write a figure to a .png, .svg or .pdf file"), ("out", "write a figure to a .png, .svg or .pdf file"),
    ("folder.png", "is a folder; name a .png, .svg or .pdf file")])
def test_plot_density_output_is_checked_first(tmp_path, plane_model, output, message):
    (tmp_path / "folder.png").mkdir()
    target = tmp_path / output
    line = _one_line(_run("plot-density", plane_model, "--no-points", "-o", target))
    assert line.startswith(f"error: {target}: ") and message in line, line
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", ["decode", "interpolate", "reconstruct"])
def test_grid_outputs_name_a_format(tmp_path, model_file, latents_file, verb):
    args = {"decode": ["decode", model_file, latents_file], "interpolate": ["interpolate", model_file, latents_file, latents_file],
            "reconstruct": ["reconstruct", model_file, "--data", "digits", "--index", "1"]}[verb]
    line = _one_line(_run(*args, "-o", tmp_path / "grid.txt"))
    assert "grid.txt" in line and not (tmp_path / "grid.txt").exists()


def test_a_parent_folder_the_user_names_may_be_a_link(tmp_path):
    """Only the file itself (and the folders flowspec makes in a run or build folder) must not be
    links: `-o /tmp/x.svg` works where /tmp is a link (macOS)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    result = _run("render", _write(tmp_path, OK), "-o", tmp_path / "linked" / "flow.dot")
    assert result.exit_code == 0 and (tmp_path / "real" / "flow.dot").is_file()
