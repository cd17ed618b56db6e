"""torchrun with 2 CPU processes (gloo) matches one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from flowspec.train.checkpoints import load_checkpoint

SPEC = """\
name: tiny-ddp
input: {shape: [1, 8, 8], levels: 17}
levels: 2
steps: 1
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
training: {batch_size: 16, lr: 0.003, warmup: 1, ema: 0.9, eval_every: 1000, checkpoint_every: 1000,
           sample_every: 1000, eval_batches: 1, device: cpu}
"""


def run(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_two_process_gloo_matches_one_process(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    common = ["-m", "flowspec", "train", str(spec), "--steps", "4", "--no-progress"]
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *common,
         "--out", str(tmp_path / "ddp")], tmp_path)
    run([sys.executable, *common, "--out", str(tmp_path / "single")], tmp_path)
    ddp, single = load_checkpoint(tmp_path / "ddp" / "last.pt"), load_checkpoint(tmp_path / "single" / "last.pt")
    assert ddp["step"] == single["step"] == 4 and ddp["data_order"]["world_size"] == 2
    for key, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    # both took 4 optimizer steps, and the coupling's zero-initialised last conv moved away from 0
    states = single["optimizer"]["state"]
    assert states and all(int(s["step"]) == 4 for s in states.values())
    assert single["state_dict"]["layers.3.net.4.weight"].abs().max() > 1e-4
    # only rank 0 wrote files: one metrics line per 10 steps or the last, no duplicates
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert sum('"loss"' in line for line in lines) == 1
    # the logged loss is the all-reduced mean over both halves of the batch: the single-process figure
    logged = {run: next(json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
                        if '"loss"' in line) for run in ("ddp", "single")}
    for key in ("loss", "bpd_avg", "grad_norm"):
        assert logged["ddp"][key] == pytest.approx(logged["single"][key], rel=1e-5), key
