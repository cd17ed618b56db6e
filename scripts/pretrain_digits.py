"""Train the pretrained reference models shipped in ``flowspec/pretrained/``: the four digits specs
(``glow-digits``, ``flowpp-digits``, ``glow-digits-cond``, ``vae-iaf-digits``) on scikit-learn's
bundled 8x8 digits, on a short step budget, then write each as safetensors with its record.

    python scripts/pretrain_digits.py                    # train (or reuse runs/pretrained/NAME), export
    python scripts/pretrain_digits.py --only glow-digits

Each model is trained by ``flowspec train SPEC --steps N --seed 0 --out runs/pretrained/NAME``
(the spec's own recipe otherwise); its EMA weights go to ``flowspec/pretrained/NAME.safetensors``
(spec and data set in the file's metadata, no pickle), and ``flowspec/pretrained/models.json``
records the command, the commit it was trained at, the step count, the training time and the test bits/dim measured
on the exported file (digits test split, dequantization noise seed 0, k = 1): the figure that
``tests/test_pretrained.py`` checks. A run folder that already holds ``last.pt`` at N steps is
reused (delete it to retrain).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the shipped models and their step budgets (short: a few minutes in all on a 2-core CPU)
BUDGETS = {"glow-digits": 1000, "glow-digits-cond": 400, "vae-iaf-digits": 800, "flowpp-digits": 150}


def command_of(name: str, steps: int, runs: Path) -> list[str]:
    return ["flowspec", "train", f"specs/{name}.yaml", "--steps", str(steps), "--seed", "0",
            "--out", str(runs / name), "--no-progress"]


def trained(name: str, steps: int, runs: Path) -> float | None:
    """Train NAME unless its run folder is already at ``steps``; the seconds it took (None: reused).
    ``trained.json`` beside the run records the commit and the seconds."""
    import torch

    last = runs / name / "last.pt"
    if last.is_file() and torch.load(last, map_location="cpu", weights_only=True)["step"] >= steps:
        return None
    command = command_of(name, steps, runs)
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flowspec", *command[1:]], cwd=ROOT, check=True)
    seconds = time.perf_counter() - tic
    (runs / name / "trained.json").write_text(json.dumps({"commit": commit(), "seconds": round(seconds, 1)}))
    return seconds


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(BUDGETS), help="models to (re)do [all]")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "pretrained", help="run folders")
    parser.add_argument("--train-only", action="store_true", help="train, do not export")
    args = parser.parse_args()
    names = args.only or list(BUDGETS)
    for name in names:
        trained(name, BUDGETS[name], args.runs)
    if args.train_only:
        return
    from flowspec.compile.export import MODEL_FORMAT, load_model, read_checkpoint, save_safetensors
    from flowspec.pretrained import MODELS_FILE, PRETRAINED_FOLDER
    from flowspec.train.evaluate import evaluate_checkpoint

    records = json.loads(MODELS_FILE.read_text()) if MODELS_FILE.is_file() else {}
    for name in names:
        last = args.runs / name / "last.pt"
        checkpoint = read_checkpoint(last, MODEL_FORMAT)
        path = PRETRAINED_FOLDER / f"{name}.safetensors"
        save_safetensors(load_model(last), path, data=checkpoint.get("data"))
        bpd = evaluate_checkpoint(path, seed=0).bpd
        when = json.loads((args.runs / name / "trained.json").read_text())
        records[name] = {
            "command": " ".join(command_of(name, BUDGETS[name], Path("runs/pretrained"))),
            "script": "python scripts/pretrain_digits.py",
            "commit": when["commit"],
            "steps": int(checkpoint["step"]),
            "train_seconds": when["seconds"],
            "parameters": sum(p.numel() for p in load_model(path).parameters()),
            "file_bytes": path.stat().st_size,
            "test_bits_per_dim": bpd,
            "evaluation": "digits test split, dequantization noise seed 0, k=1 (flowspec eval FILE)",
        }
        print(f"{name}: {int(checkpoint['step'])} steps, test {bpd:.4f} bits/dim, {path.stat().st_size:,} bytes")
    MODELS_FILE.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    print(f"wrote {MODELS_FILE}")


if __name__ == "__main__":
    main()
