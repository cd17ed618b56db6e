"""``benchmarks/gpu.py``: one line and exit 0 without CUDA; the same code path on the CPU (a dry run)
measures, predicts and writes its JSON and markdown."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def load_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_one_line_and_exit_0():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as the device runs it: no install needed
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]


def test_cpu_dry_run_measures_predicts_and_writes(tmp_path):
    suite = load_suite()
    out = tmp_path / "gpu"
    assert suite.main(["--device", "cpu", "--specs", "moons-cond", "--no-compile", "--repeats", "1",
                       "--warmup", "0", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    rows = data["rows"]
    assert [(r["precision"], r["mode"]) for r in rows] == [("float32", "eager"), ("bf16", "eager")]
    for row in rows:
        assert row["spec"] == "moons-cond.yaml" and row["batch"] == 128
        assert row["train_images_s"] > 0 and row["sample_images_s"] > 0
        assert row["train_ms"] == pytest.approx(1e3 * 128 / row["train_images_s"])
        for predicted in row["predicted"].values():
            assert predicted["train_ms"] > predicted["sample_ms"] > 0
    assert set(rows[0]["predicted"]) == {"float32", "tf32"} and set(rows[1]["predicted"]) == {"bfloat16"}
    table = out.with_suffix(".md").read_text()
    assert "| moons-cond.yaml | float32 | eager | 128 |" in table and "DDP: cpu dry run" in table


def test_a_failing_spec_is_one_line_and_the_suite_goes_on(tmp_path, capsys):
    suite = load_suite()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ninput: {shape: [2], data: continuous}\nlayers: [{kind: nosuchkind}]\n")
    out = tmp_path / "gpu"
    assert suite.main(["--device", "cpu", "--specs", str(bad), "moons-cond", "--no-compile", "--repeats", "1",
                       "--warmup", "0", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert rows[0]["spec"] == "bad.yaml" and "nosuchkind" in rows[0]["error"]
    assert [r["spec"] for r in rows[1:]] == ["moons-cond.yaml", "moons-cond.yaml"]
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith("bad.yaml")


def test_time_cap_interrupts_a_busy_loop():
    suite = load_suite()
    with pytest.raises(suite.OverTime, match="over its time cap"):
        with suite.time_cap(0.05, "sleeper"):
            while True:
                pass
