"""Every shipped spec names its data set (``training.data``) and `flowspec train SPEC` starts on it.

Specs on data that ships with scikit-learn train two steps on it; specs on files the user supplies
(CIFAR-10, MNIST, CelebA-HQ) stop with one line that names the spec's field and asks for
``--data-dir``, and read a tiny stand-in of that format with the spec's own shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from data_writers import write_cifar, write_mnist, write_png
from flowspec import load_spec
from flowspec.cli import app
from flowspec.data import BUNDLED_KINDS
from flowspec.errors import SpecError
from flowspec.train.conditions import load_spec_data, spec_data_set

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))
BUNDLED = [path for path in SPECS if spec_data_set(load_spec(path)) in BUNDLED_KINDS]
SUPPLIED = [path for path in SPECS if path not in BUNDLED]


def test_every_shipped_spec_names_its_data():
    for path in SPECS:
        training = load_spec(path).training
        assert training is not None and training.data is not None, f"{path.name}: no training.data"


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_spec_trains_on_its_data(path, tmp_path):
    spec = load_spec(path)
    result = CliRunner().invoke(app, ["train", str(path), "--set", "training.steps=2", "--batch-size", "8",
                                      "--eval-every", "2", "--checkpoint-every", "2", "--sample-every", "1000",
                                      "--set", "training.eval_batches=1", "--no-progress", "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith(f"{spec.name}: {spec.training.data} ("), first
    assert "step 2: test" in result.output


@pytest.mark.parametrize("path", SUPPLIED, ids=lambda p: p.stem)
def test_supplied_data_spec_asks_for_its_files_in_one_line(path, tmp_path):
    kind = load_spec(path).training.data
    result = CliRunner().invoke(app, ["train", str(path), "--steps", "2", "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"{path}: training.data: {kind}" in lines[0] and "--data-dir" in lines[0]


def _stand_in(kind: str, shape: tuple[int, ...], folder: Path) -> Path:
    """Four train and two test images of ``kind``'s file format, with ``shape``'s element count
    (``npz``: binarised, as the shipped npz spec, vae-iaf-mnist, takes it)."""
    rng = np.random.default_rng(0)
    if kind == "mnist":
        return write_mnist(folder, rng.integers(0, 256, (4, 28, 28)), rng.integers(0, 256, (2, 28, 28)))
    if kind == "cifar10":
        batch = (rng.integers(0, 256, (4, 3072), dtype=np.uint8), [0, 1, 2, 3])
        return write_cifar(folder, {"data_batch_1": batch, "test_batch": batch})
    if kind == "npz":
        np.savez(folder / "data.npz", x_train=rng.integers(0, 2, (4, *shape)), x_test=rng.integers(0, 2, (2, *shape)))
        return folder / "data.npz"
    if kind in ("power", "miniboone"):  # the MAF paper's tables: small files in the published formats
        (folder / kind).mkdir()
        np.save(folder / kind / "data.npy", rng.normal(size=(60, 8 if kind == "power" else shape[0])))
        return folder
    if kind == "gas":
        import pandas as pd

        (folder / "gas").mkdir()
        columns = {"Time": np.arange(60.0), "Meth": rng.random(60), "Eth": rng.random(60)}
        columns.update({f"s{i}": rng.normal(size=60) for i in range(shape[0])})
        pd.DataFrame(columns).to_csv(folder / "gas" / "ethylene_CO.csv", index=False)
        return folder
    if kind == "hepmass":
        import pandas as pd

        (folder / "hepmass").mkdir()
        for name, extra in (("1000_train.csv", False), ("1000_test.csv", True)):
            columns = {"# label": np.ones(30)} | {f"f{i}": rng.normal(size=30) for i in range(shape[0])}
            columns["mass"] = rng.choice([500.0, 750.0], 30)  # few values: the paper's rule drops it
            if extra:
                columns["extra"] = np.zeros(30)
            pd.DataFrame(columns).to_csv(folder / "hepmass" / name, index=False)
        return folder
    if kind == "bsds300":
        import h5py

        (folder / "BSDS300").mkdir()
        with h5py.File(folder / "BSDS300" / "BSDS300.hdf5", "w") as file:
            for name in ("train", "validation", "test"):
                file[name] = rng.normal(size=(6, shape[0]))
        return folder
    assert kind == "folder"
    for part, count in (("train", 4), ("test", 2)):
        for i in range(count):
            write_png(folder / part / f"{i}.png", rng.integers(0, 256, (shape[1], shape[2], shape[0])))
    return folder


@pytest.mark.parametrize("path", SUPPLIED, ids=lambda p: p.stem)
def test_supplied_data_spec_reads_its_format(path, tmp_path):
    spec = load_spec(path)
    kind = spec_data_set(spec)
    data = load_spec_data(spec, kind, _stand_in(kind, tuple(spec.input.shape), tmp_path))
    assert tuple(data.train.shape[1:]) == tuple(spec.input.shape)


def test_command_line_overrides_the_spec_data(tmp_path):
    path = next(p for p in SPECS if p.stem == "maf-wine")
    result = CliRunner().invoke(app, ["train", str(path), "--data", "moons", "--steps", "1", "--no-progress",
                                      "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "input.shape is [13]" in result.output  # moons are 2-D: the option won
    result = CliRunner().invoke(app, ["train", str(path), "--no-standardize", "--steps", "1", "--eval-every", "1",
                                      "--no-progress", "-o", str(tmp_path / "raw")])
    assert result.exit_code == 0, result.output


def test_an_unknown_data_set_is_a_located_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("input: {shape: [2], data: continuous}\nlayers:\n  - {kind: actnorm}\n"
                    "training:\n  data: wines\n")
    with pytest.raises(SpecError, match=r"bad.yaml:5:\d+: training.data"):
        load_spec(spec)
