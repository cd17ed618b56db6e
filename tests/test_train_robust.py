"""Training under hostile conditions: damaged checkpoints, a second run on the same folder, signals,
a full disk, non-finite data, integer data through the Python API. Each failure is one clear line
with exit code 2 (or the signal's conventional code), never a traceback, and nothing is lost."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.compile.integrity import sealed
from flowspec.data import DataSplit, load_digits
from flowspec.errors import CheckpointError, DataError
from flowspec.train.checkpoints import load_checkpoint
from flowspec.train.config import TrainingConfig
from flowspec.train.runner import train

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--no-progress", "--eval-every", "1000", "--sample-every", "1000", "--batch-size", "16", "--warmup", "1"]


@pytest.fixture
def spec_file(tmp_path, tiny_glow_yaml) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\n" + tiny_glow_yaml + "training: {eval_batches: 1, device: cpu}\n")
    return path


@pytest.fixture(scope="module")
def small_digits() -> DataSplit:
    full = load_digits()
    return DataSplit("digits", full.train[:128], full.test[:32], levels=17)


def invoke(*args) -> tuple[int, str]:
    """Exit code and the error text (stderr) of ``flowspec ARGS``; an uncaught exception fails."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stderr if result.exit_code else result.output


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def trained_run(spec_file: Path, tmp_path: Path, steps: int = 2) -> Path:
    out = tmp_path / "run"
    code, output = invoke("train", spec_file, "--steps", steps, "--out", out, *QUIET)
    assert code == 0, output
    return out


def storage_span(path: Path) -> tuple[int, int]:
    """Byte offsets of the largest tensor storage inside a torch zip file."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "rb") as stream:
        stream.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", stream.read(4))
    start = info.header_offset + 30 + name_length + extra_length
    return start, start + info.file_size


def test_a_flipped_byte_in_the_weights_is_caught_by_the_checksum(spec_file, tmp_path):
    last = trained_run(spec_file, tmp_path) / "last.pt"
    assert load_checkpoint(last)["checksum"]["sha256"]
    raw = bytearray(last.read_bytes())
    start, end = storage_span(last)
    raw[(start + end) // 2] ^= 0x04  # one bit, in the middle of the largest tensor
    last.write_bytes(bytes(raw))
    code, output = invoke("eval", last)
    assert code == 2 and "damaged: the sha256 of its contents" in one_line(output) and str(last) in output
    code, output = invoke("train", spec_file, "--steps", 4, "--out", last.parent, "--resume", *QUIET)
    assert code == 2 and "damaged" in one_line(output)


def test_nan_weights_are_refused_naming_the_parameter(spec_file, tmp_path):
    last = trained_run(spec_file, tmp_path) / "last.pt"
    contents = torch.load(last, weights_only=True)
    name = "layers.3.net.0.weight"
    weight = contents["state_dict"][name].contiguous().clone()
    weight.view(-1)[5] = float("nan")
    contents["state_dict"][name] = weight
    torch.save(sealed(contents), last)  # a valid checksum over NaN weights: the weights check names them
    code, output = invoke("eval", last)
    assert code == 2 and f"state_dict parameter {name!r} holds 1 non-finite value(s) (nan)" in one_line(output)


def test_a_step_that_is_a_string_is_refused(spec_file, tmp_path):
    last = trained_run(spec_file, tmp_path) / "last.pt"
    contents = torch.load(last, weights_only=True)
    contents["step"] = "2"
    torch.save(sealed(contents), last)
    for args in (["eval", last], ["train", spec_file, "--steps", 4, "--out", last.parent, "--resume", *QUIET]):
        code, output = invoke(*args)
        assert code == 2 and "field 'step' must be int, got str '2'" in one_line(output), args
    contents["step"] = True
    torch.save(sealed(contents), last)
    with pytest.raises(CheckpointError, match="field 'step' must be int, got bool True"):
        load_checkpoint(last)
    contents["step"] = 2
    del contents["checksum"]  # written before checksums existed: still read, with the other checks
    torch.save(contents, last)
    assert load_checkpoint(last)["step"] == 2
    code, output = invoke("eval", last)
    assert code == 0 and "at step 2: test bits/dim" in output


def test_a_resumed_run_removes_temporaries_left_by_kill_9(spec_file, tmp_path):
    out = trained_run(spec_file, tmp_path)
    stale = [out / ".last.pt.k9x2ab1q", out / ".best.pt.0w8e7fjm"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    code, output = invoke("train", spec_file, "--steps", 3, "--out", out, "--resume", *QUIET)
    assert code == 0, output
    assert "removed 2 temporary file(s) left by a killed run" in output
    assert not any(path.exists() for path in stale)
    assert load_checkpoint(out / "last.pt")["step"] == 3


HOLDER = """\
import fcntl, os, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
handle.seek(0); handle.truncate(); handle.write(f"{os.getpid()}\\n"); handle.flush()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_run_on_a_folder_in_use_is_refused_and_a_stale_lock_is_not(spec_file, tmp_path):
    out = trained_run(spec_file, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in (["--resume"], []):
            code, output = invoke("train", spec_file, "--steps", 3, "--out", out, *extra, *QUIET)
            assert code == 2 and f"run folder {out} in use by PID {holder.pid}" in one_line(output), extra
        code, output = invoke("train", spec_file, "--steps", 3, "--out", tmp_path / "other", *QUIET)
        assert code == 0, output  # another folder is not blocked
    finally:
        holder.send_signal(signal.SIGKILL)  # killed while holding it: the kernel drops the lock
        holder.wait()
    assert (out / ".lock").read_text().strip() == str(holder.pid)  # the stale file is still there
    code, output = invoke("train", spec_file, "--steps", 3, "--out", out, "--resume", *QUIET)
    assert code == 0, output
    assert load_checkpoint(out / "last.pt")["step"] == 3


def test_sigterm_writes_a_checkpoint_and_exits_143(spec_file, tmp_path):
    """What a cluster scheduler does on preemption, to a real process."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "flowspec", "train", str(spec_file), "--steps", "100000", "--out", str(out),
               "--checkpoint-every", "100000", "--eval-every", "100000", "--sample-every", "100000",
               "--batch-size", "16", "--no-progress"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        lock = out / ".lock"  # taken once the handlers are in place, before the model is built
        while not (lock.is_file() and lock.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    line = one_line(stderr)
    assert line.startswith("stopped by SIGTERM at step ") and "continue with --resume" in line
    step = int(line.split(" at step ")[1].split()[0])
    assert step >= 1 and load_checkpoint(out / "last.pt")["step"] == step


@contextlib.contextmanager
def sigint_handler(handler):
    """SIGINT handled by ``handler`` inside, the handler pytest was started with restored after."""
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_inherited_ignored_sigint_stays_ignored(spec_file, tmp_path, monkeypatch):
    """Started with SIGINT ignored (nohup, `cmd &`, CI runners), a SIGINT during training changes
    nothing: the run finishes, and SIGINT is still ignored after it."""
    from flowspec.train import runner

    real_seed_step = runner.seed_step

    def interrupted_at_1(seed, step, *args):
        real_seed_step(seed, step, *args)
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(runner, "seed_step", interrupted_at_1)
    with sigint_handler(signal.SIG_IGN):
        code, output = invoke("train", spec_file, "--steps", 3, "--out", tmp_path / "run", *QUIET)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert code == 0, output
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3


def test_sigint_mid_step_writes_that_step_and_exits_130(spec_file, tmp_path, monkeypatch):
    """Ctrl-C during step 3 (0-based): the step finishes, last.pt holds step 4, exit 130; the run
    resumes from there."""
    from flowspec.train import runner

    real_seed_step = runner.seed_step

    def interrupted_at_3(seed, step, *args):
        real_seed_step(seed, step, *args)
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(runner, "seed_step", interrupted_at_3)
    out = tmp_path / "run"
    with sigint_handler(signal.default_int_handler):  # as an interactive shell starts it, however pytest was
        code, output = invoke("train", spec_file, "--steps", 50, "--out", out, *QUIET)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert code == 130
    assert one_line(output) == f"stopped by SIGINT at step 4 of 50; wrote {out / 'last.pt'} (step 4); continue with --resume"
    assert load_checkpoint(out / "last.pt")["step"] == 4
    monkeypatch.setattr(runner, "seed_step", real_seed_step)
    code, output = invoke("train", spec_file, "--steps", 6, "--out", out, "--resume", *QUIET)
    assert code == 0 and load_checkpoint(out / "last.pt")["step"] == 6


def test_a_full_disk_keeps_the_previous_checkpoint_in_one_line(spec_file, tmp_path, monkeypatch):
    out = trained_run(spec_file, tmp_path)
    before = (out / "last.pt").read_bytes()
    real_save = torch.save

    def disk_fills(obj, stream, *args, **kwargs):
        real_save(obj, stream, *args, **kwargs)
        stream.seek(64)
        stream.truncate()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_fills)
    code, output = invoke("train", spec_file, "--steps", 4, "--out", out, "--resume", *QUIET)
    line = one_line(output)
    written = re.search(r"cannot write (last|best)\.pt in (.*): no space left on the device \(needs about", line)
    assert code == 2 and written and written[2] == str(out), line
    assert f"the previous {written[1]}.pt is kept" in line
    monkeypatch.setattr(torch, "save", real_save)
    assert (out / "last.pt").read_bytes() == before
    assert not list(out.glob(".last.pt.*"))
    # a disk that is already too full is refused before anything is written
    monkeypatch.setattr("flowspec.train.checkpoints._free_bytes", lambda folder: 1000)
    code, output = invoke("train", spec_file, "--steps", 4, "--out", out, "--resume", *QUIET)
    refused = re.search(r"cannot write (last|best)\.pt in .*: no space left on the device "
                        r"\(needs about ([\d.]+) KiB, 1000 B free\)", one_line(output))
    assert code == 2 and refused, output
    size = (out / f"{refused[1]}.pt").stat().st_size  # the same state one step earlier
    assert size <= float(refused[2]) * 1024 < 1.5 * size  # the estimate bounds the file, not by much
    assert (out / "last.pt").read_bytes() == before


def test_infinite_data_is_named_as_data_before_any_layer(spec_file, tmp_path, small_digits, monkeypatch):
    train_part = small_digits.train.clone()
    train_part[17, 0, 3, 4] = float("inf")
    poisoned = DataSplit("digits", train_part, small_digits.test, levels=17)
    monkeypatch.setattr("flowspec.data.load_data", lambda *args: poisoned)
    code, output = invoke("train", spec_file, "--steps", 2, "--out", tmp_path / "run", *QUIET)
    line = one_line(output)
    assert code == 2 and "data set 'digits': 1 NaN or inf values in the train examples (first in row 17)" in line
    assert "layer" not in line
    from flowspec.train.diagnosis import find_nonfinite

    model = flowspec.compile(flowspec.load_spec(spec_file))
    model.initialize(small_digits.train[:16])
    assert "the data, not a layer" in find_nonfinite(model, train_part[:20])


def test_bpd_avg_is_carried_through_resume(tmp_path, spec_file, small_digits):
    spec = flowspec.load_spec(spec_file)
    config = dict(batch_size=16, lr=3e-3, warmup=2, eval_every=1000, checkpoint_every=1000, sample_every=1000,
                  ema=None, device="cpu")
    train(spec, small_digits, TrainingConfig(steps=20, **config), tmp_path / "whole", progress=False)
    train(spec, small_digits, TrainingConfig(steps=10, **config), tmp_path / "split", progress=False)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["bpd_avg"] > 0
    train(spec, small_digits, TrainingConfig(steps=20, **config), tmp_path / "split", resume=True, progress=False)

    def averages(run):
        rows = [json.loads(row) for row in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [row["bpd_avg"] for row in rows if "bpd_avg" in row]

    assert averages("whole") == averages("split") and len(averages("whole")) == 2


SPEC_KINDS = {
    "uniform": None,
    "variational": "dequantization: {kind: variational, steps: 1, hidden: 8, context: {hidden: 8, depth: 1}}\n",
}


@pytest.mark.parametrize("dequantization", sorted(SPEC_KINDS))
def test_integer_tensors_of_any_dtype_are_accepted(tiny_glow_yaml, small_digits, dequantization):
    spec = flowspec.loads_spec(tiny_glow_yaml + (SPEC_KINDS[dequantization] or ""))
    model = flowspec.compile(spec)
    x = small_digits.train[:8]
    model.initialize(x.to(torch.uint8))
    for dtype in (torch.long, torch.uint8, torch.int16, torch.float64):
        torch.manual_seed(0)
        expected = model.bits_per_dim(x)
        torch.manual_seed(0)
        torch.testing.assert_close(model.bits_per_dim(x.to(dtype)), expected, msg=str(dtype))
    assert model.bits_per_dim(x.long(), k=3).shape == (8,)


def test_integer_tensors_are_accepted_by_a_vae(small_digits):
    model = flowspec.compile(flowspec.load_spec(ROOT / "specs" / "vae-iaf-digits.yaml"))
    x = small_digits.train[:8].reshape(8, *model.input_shape)
    model.initialize(x.long())
    torch.manual_seed(0)
    expected = model.bits_per_dim(x)
    torch.manual_seed(0)
    torch.testing.assert_close(model.bits_per_dim(x.to(torch.uint8)), expected)


@pytest.mark.parametrize("value", [17.0, -1.0, float("nan"), 300.0])
def test_data_outside_the_levels_is_a_value_error_naming_the_range(tiny_glow_yaml, small_digits, value):
    model = flowspec.compile(flowspec.loads_spec(tiny_glow_yaml))
    x = small_digits.train[:4].clone()
    x[1, 0, 2, 2] = value
    expected = r"expected discrete data in \[0, 17\) \(the spec's input.levels: integers 0..16\)"
    for call in (model.bits_per_dim, model.elbo, model.initialize):
        with pytest.raises(ValueError, match=expected):
            call(x)
    with pytest.raises(ValueError, match=expected):
        model.bits_per_dim(x.long() if value == value else x)


def test_data_errors_through_the_api_leave_no_run_folder(spec_file, small_digits, tmp_path):
    spec = flowspec.load_spec(spec_file)
    train_part = small_digits.train.clone()
    train_part[3] = float("-inf")
    with pytest.raises(DataError, match=r"data set 'digits': 64 NaN or inf values in the train examples \(first in row 3\)"):
        train(spec, DataSplit("digits", train_part, small_digits.test, 17),
              TrainingConfig(steps=2, batch_size=16, device="cpu"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataError, match="fewer than one batch of 512"):  # found with the folder locked
        train(spec, small_digits, TrainingConfig(steps=2, batch_size=512, device="cpu"), tmp_path / "run",
              progress=False)
    assert not (tmp_path / "run").exists()
