"""The MAF paper's UCI tables, read from small files the tests write in the published formats: the
preprocessing and the train / validation / test splits as the paper's code defines them, and one
line naming the missing file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flowspec.cli.app import app
from flowspec.data import load_data
from flowspec.data.uci import load_uci
from flowspec.errors import DataError

runner = CliRunner()


def _close(tensor, array):
    np.testing.assert_allclose(tensor.double().numpy(), array, rtol=1e-5, atol=1e-5)


def test_power_shuffles_drops_adds_noise_splits_and_standardizes_as_maf(tmp_path):
    (tmp_path / "power").mkdir()
    raw = np.random.default_rng(0).normal(size=(230, 8)) * 3 + 5
    np.save(tmp_path / "power" / "data.npy", raw)
    data = load_uci("power", tmp_path)
    rng = np.random.RandomState(42)  # the paper's steps, written out another way
    rows = raw[rng.permutation(230)][:, [0, 2, 4, 5, 6, 7]]
    noise = np.zeros_like(rows)
    noise[:, 1] = 0.01 * rng.rand(230)
    noise[:, 0] = 0.001 * rng.rand(230)
    noise[:, 2:5] = rng.rand(230, 3)
    rows = rows + noise
    test, rest = rows[207:], rows[:207]  # int(0.1 * 230) = 23 test rows
    train, validation = rest[:187], rest[187:]  # int(0.1 * 207) = 20 validation rows
    mean, std = rest.mean(0), rest.std(0)
    _close(data.train, (train - mean) / std)
    _close(data.validation, (validation - mean) / std)
    _close(data.test, (test - mean) / std)


def test_miniboone_splits_from_the_end_and_standardizes_by_train_and_validation(tmp_path):
    raw = np.random.default_rng(1).gamma(2.0, size=(101, 43))
    np.save(tmp_path / "data.npy", raw)
    data = load_uci("miniboone", tmp_path / "data.npy")
    rest = raw[:91]
    assert (len(data.train), len(data.validation), len(data.test)) == (82, 9, 10)
    _close(data.test, (raw[91:] - rest.mean(0)) / rest.std(0))


def test_gas_drops_labels_and_correlated_sensors_then_standardizes_the_whole_table(tmp_path):
    rng = np.random.default_rng(2)
    n = 150
    sensors = rng.normal(size=(n, 4))
    frame = pd.DataFrame({"Time": np.arange(n), "Meth": rng.random(n), "Eth": rng.random(n),
                          "s1": sensors[:, 0], "s2": 2 * sensors[:, 0] + 1e-3 * sensors[:, 1],
                          "s3": sensors[:, 2], "s4": sensors[:, 3]})
    (tmp_path / "gas").mkdir()
    frame.to_csv(tmp_path / "gas" / "ethylene_CO.csv", index=False)
    data = load_uci("gas", tmp_path)
    assert data.info["features"] == ["s2", "s3", "s4"]  # s1 correlates with s2 above 0.98: the first goes
    kept = frame[["s2", "s3", "s4"]]
    table = ((kept - kept.mean()) / kept.std()).to_numpy()
    _close(data.test, table[135:])  # int(0.1 * 150) = 15
    _close(data.validation, table[122:135])  # int(0.1 * 135) = 13
    assert len(data.train) == 122


def test_gas_as_the_published_pickle_is_refused_unread_with_the_conversion(tmp_path):
    (tmp_path / "gas").mkdir()
    (tmp_path / "gas" / "ethylene_CO.pickle").write_bytes(b"\x80\x04not read")
    with pytest.raises(DataError, match="a pandas pickle, which runs code when read; convert it once"):
        load_uci("gas", tmp_path)


def _hepmass_frames(rng, n: int, test: bool):
    label = rng.integers(0, 2, n).astype(float)
    label[:8] = 1  # signal rows
    columns = {"# label": label}
    for j in range(4):
        columns[f"f{j}"] = rng.normal(size=n)
    columns["f1"][:8] = columns["f1"].min() - 1  # the smallest value 8 times: the paper's rule drops f1
    columns["mass"] = rng.choice([500.0, 750.0, 1000.0], n)
    if test:
        columns["extra"] = np.zeros(n)  # the test file's different layout: its last column goes
    return pd.DataFrame(columns)


def test_hepmass_keeps_signal_drops_repeated_value_features_and_matches_columns_by_name(tmp_path):
    rng = np.random.default_rng(3)
    train, test = _hepmass_frames(rng, 400, False), _hepmass_frames(rng, 100, True)
    folder = tmp_path / "hepmass"
    folder.mkdir()
    train.to_csv(folder / "1000_train.csv", index=False)
    test.to_csv(folder / "1000_test.csv", index=False)
    data = load_uci("hepmass", tmp_path)
    # the paper's code, by pandas: signal rows, normalised by the train statistics, aligned by name
    signal = train[train["# label"] == 1].drop(columns="# label")
    signal_test = test[test["# label"] == 1].drop(columns=["# label", "extra"])
    mean, std = signal.mean(), signal.std()
    expected_test = ((signal_test - mean) / std)[["f0", "f2", "f3"]].to_numpy()
    expected_train = ((signal - mean) / std)[["f0", "f2", "f3"]].to_numpy()
    assert data.info["features"] == ["f0", "f2", "f3"]  # f1 (8 repeats of its minimum) and mass go
    n_validation = int(0.1 * len(expected_train))
    _close(data.train, expected_train[:len(expected_train) - n_validation])
    _close(data.validation, expected_train[len(expected_train) - n_validation:])
    _close(data.test, expected_test)


def test_bsds300_reads_the_three_splits_of_the_hdf5_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(4)
    (tmp_path / "BSDS300").mkdir()
    parts = {name: rng.normal(size=(n, 63)) for name, n in (("train", 50), ("validation", 10), ("test", 20))}
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as file:
        for name, values in parts.items():
            file[name] = values
    data = load_data("bsds300", tmp_path, (63,), None)
    _close(data.train, parts["train"])
    _close(data.validation, parts["validation"])
    _close(data.test, parts["test"])


@pytest.mark.parametrize("kind, file", [("power", "power/data.npy"), ("hepmass", "hepmass/1000_train.csv"),
                                        ("miniboone", "miniboone/data.npy"), ("bsds300", "BSDS300/BSDS300.hdf5"),
                                        ("gas", "gas/ethylene_CO.csv")])
def test_train_names_the_missing_file_in_one_line(tmp_path, kind, file):
    from pathlib import Path

    spec = Path(__file__).resolve().parents[1] / "specs" / f"maf-{kind}.yaml"
    result = runner.invoke(app, ["train", str(spec), "--data", kind, "--data-dir", str(tmp_path),
                                 "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line]
    assert lines == [f"error: {tmp_path}: no {file} (the {kind} table's file, in its published preprocessed form)"]


def test_train_without_a_data_dir_names_the_file_it_needs(tmp_path):
    from pathlib import Path

    spec = Path(__file__).resolve().parents[1] / "specs" / "maf-miniboone.yaml"
    result = runner.invoke(app, ["train", str(spec), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].endswith("pass --data-dir (the folder holding miniboone/data.npy)")
