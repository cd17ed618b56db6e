"""Hostile and broken data files: each is refused with one DataError line naming the file (and the
array, column or field), a crafted CIFAR batch never runs its payload, and the CLI prints one line
and exits 2 without a traceback."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
from data_writers import cifar_batch, write_idx_images, write_mnist, write_pickle, write_png
from typer.testing import CliRunner

from flowspec.cli import app
from flowspec.data import load_cifar10, load_csv, load_data, load_mnist, load_npz, load_plain_pickle
from flowspec.errors import DataError

GOOD = np.zeros((2, 3072), dtype=np.uint8)


def _one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    text = str(error.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text


class CreatesFile:
    """Unpickling calls ``open(path, 'w')``, which creates the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


class RunsShell:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def _cifar_folder(folder, train_batch):
    write_pickle(folder / "data_batch_1", train_batch)
    write_pickle(folder / "test_batch", cifar_batch(GOOD, [0, 1]))
    return folder


@pytest.mark.parametrize("payload, refused", [
    (lambda marker: CreatesFile(marker), ".open"),
    (lambda marker: RunsShell(marker), ".system"),
    (lambda marker: {b"data": GOOD, b"labels": [0, 1], b"x": CreatesFile(marker)}, ".open"),
    (lambda marker: cifar_batch(np.array([CreatesFile(marker)], dtype=object), [0]), ".open"),
], ids=["open", "os.system", "inside-dict", "inside-object-array"])
def test_crafted_cifar_batch_does_not_run(tmp_path, payload, refused):
    marker = tmp_path / "pwned"
    raw = pickle.dumps(payload(marker), protocol=2)
    assert not marker.exists()
    (tmp_path / "data_batch_1").write_bytes(raw)
    write_pickle(tmp_path / "test_batch", cifar_batch(GOOD, [0, 1]))
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    _one_line(error, "data_batch_1: refused global", refused, "not loaded")
    assert not marker.exists()
    # plain pickle.load would have run it: the payload is real
    pickle.loads(raw)
    assert marker.exists()


def test_crafted_cifar_batch_through_the_cli(tmp_path, tiny_glow_yaml):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar"
    folder.mkdir()
    _cifar_folder(folder, CreatesFile(marker))
    spec = tmp_path / "spec.yaml"
    spec.write_text(tiny_glow_yaml.replace("[1, 8, 8], levels: 17", "[3, 32, 32], levels: 256"))
    result = CliRunner().invoke(app, ["train", str(spec), "--data", "cifar10", "--data-dir", str(folder),
                                      "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "data_batch_1: refused global io.open" in lines[0], result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("data, labels, message", [
    (np.full((2, 3072), 300.0), [0, 1], "b'data' has dtype float64, expected uint8 pixel values 0..255"),
    (np.full((2, 3072), 7.0, dtype=np.float32), [0, 1], "b'data' has dtype float32"),
    (np.full((2, 3072), 300, dtype=np.int16), [0, 1], "b'data' values span 300..300, expected 0..255"),
    (np.full((2, 3072), -1, dtype=np.int16), [0, 1], "b'data' values span -1..-1, expected 0..255"),
    ("not pixels", [0, 1], "b'data' is a str, expected a uint8 array"),
    (b"\x00" * 3072, [0], "b'data' is a bytes, expected a uint8 array"),
    (np.zeros((2, 3000), np.uint8), [0, 1], "b'data' has shape [2, 3000], expected [N, 3072]"),
    (np.zeros(3072, np.uint8), [0], "b'data' has shape [3072], expected [N, 3072]"),
    (GOOD, [0, 10], "b'labels' holds label 10, outside 0..9"),
    (GOOD, [0], "b'labels' has 1 labels for 2 examples"),
    (GOOD, [0, "cat"], "b'labels' holds non-integers"),
], ids=["float-300", "float-in-range", "int-300", "negative", "string", "bytes", "short-rows", "1-d",
        "label-10", "label-count", "label-string"])
def test_cifar_batch_with_wrong_contents(tmp_path, data, labels, message):
    _cifar_folder(tmp_path, cifar_batch(data, labels))
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    _one_line(error, "data_batch_1: ", message)


@pytest.mark.parametrize("raw, message", [
    (pickle.dumps([1, 2, 3]), "a pickled list, expected a dict"),
    (pickle.dumps({b"labels": [1]}), "no b'data'"),
    (pickle.dumps({b"data": GOOD})[:-20], "not a CIFAR-10 python batch"),
    (b"", "not a CIFAR-10 python batch"),
    (b"\x80\x02garbage", "not a CIFAR-10 python batch"),
], ids=["list", "no-data", "truncated", "empty", "garbage"])
def test_cifar_batch_that_is_not_a_batch(tmp_path, raw, message):
    (tmp_path / "data_batch_1").write_bytes(raw)
    write_pickle(tmp_path / "test_batch", cifar_batch(GOOD, [0, 1]))
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    _one_line(error, "data_batch_1: ", message)


def test_plain_pickle_reads_every_protocol_of_real_batches(tmp_path):
    batch = cifar_batch(np.arange(3072 * 2).reshape(2, 3072).astype(np.uint8), [np.int64(3), 4])
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        loaded = load_plain_pickle(write_pickle(tmp_path / f"p{protocol}", batch, protocol))
        assert np.array_equal(loaded[b"data"], batch[b"data"]) and loaded[b"labels"] == [3, 4]
        assert loaded[b"filenames"] == batch[b"filenames"] and loaded[b"batch_label"] == batch[b"batch_label"]


def _gz(tmp_path, mangle):
    write_mnist(tmp_path, np.zeros((50, 28, 28)), np.zeros((2, 28, 28)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(mangle(path.read_bytes()))
    return path


@pytest.mark.parametrize("mangle, message", [
    (lambda raw: raw[: len(raw) // 2], "truncated gzip archive"),
    (lambda raw: raw[:20] + bytes(b ^ 0xFF for b in raw[20:40]) + raw[40:], "corrupt gzip archive"),
    (lambda raw: b"PK\x03\x04" + raw[4:], "corrupt gzip archive"),
    (lambda raw: raw[:-8] + b"\x00" * 8, "corrupt gzip archive"),
], ids=["truncated", "flipped-bytes", "not-gzip", "bad-crc"])
def test_broken_gzip_mnist_is_one_line(tmp_path, mangle, message):
    path = _gz(tmp_path, mangle)
    with pytest.raises(DataError) as error:
        load_mnist(tmp_path)
    _one_line(error, f"{path}: {message}")


def test_truncated_gzip_through_the_cli_is_not_aborted(tmp_path, tiny_glow_yaml):
    _gz(tmp_path, lambda raw: raw[: len(raw) // 2])
    spec = tmp_path / "spec.yaml"
    spec.write_text(tiny_glow_yaml.replace("[1, 8, 8], levels: 17", "[1, 28, 28], levels: 256"))
    result = CliRunner().invoke(app, ["train", str(spec), "--data", "mnist", "--data-dir", str(tmp_path),
                                      "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "Aborted" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte.gz: truncated gzip archive" in lines[0], result.stderr


def test_idx_header_that_overstates_its_size(tmp_path):
    write_idx_images(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(
        (2051).to_bytes(4, "big") + (10**6).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    with pytest.raises(DataError) as error:
        load_mnist(tmp_path)
    _one_line(error, "train-images-idx3-ubyte: 0 bytes of pixels, header says 1000000x28x28")


def _save_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays, message", [
    (dict(x=np.zeros((4, 2), dtype=np.complex128)), "x holds complex numbers (dtype complex128)"),
    (dict(x=np.array([["a", "b"], ["c", "d"]])), "x holds strings (dtype <U1)"),
    (dict(x=np.zeros((4, 2)), y=np.array(["a", "b", "a", "b"])), "y holds strings"),
    (dict(x=np.zeros((4, 2)), c=np.zeros((4, 2), np.complex64)), "c holds complex numbers"),
    (dict(x=np.array(3.0)), "x is a 0-d array (a single value)"),
    (dict(x=np.array([[0.0, np.nan], [1, 2]])), "x holds 1 NaN or inf values (first in row 0, column 1)"),
    (dict(x=np.zeros((4, 2)), c=np.array([0, 1, np.inf, 2])), "c holds 1 NaN or inf values (first in row 2)"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1.5, 0, 1])), "y holds non-integer values"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, -1, 0, 1])), "y holds label -1"),
    (dict(x=np.zeros((4, 2)), y=np.zeros((4, 2), int)), "y has shape [4, 2]; labels are one integer per example"),
    (dict(x=np.zeros((4, 2)), y=np.arange(3)), "y has 3 labels for 4 examples"),
    (dict(x=np.zeros((4, 2)), c=np.zeros((5, 1))), "c has 5 context rows for 4 examples"),
    (dict(x=np.zeros((4, 2)), labels=np.arange(4)), "arrays ['labels'] are not understood"),
    (dict(x_train=np.zeros((4, 2)), x_test=np.zeros((1, 2)), y=np.arange(4)), "mixes split arrays"),
    (dict(x_train=np.zeros((4, 2)), x_test=np.zeros((1, 2)), y_train=np.arange(4)), "mixes split arrays"),
], ids=["complex", "strings", "string-labels", "complex-context", "0-d", "nan", "inf-context", "float-labels",
        "negative-label", "2-d-labels", "label-count", "context-count", "unknown-name", "stray-y", "half-pair"])
def test_npz_arrays_that_are_not_data(tmp_path, arrays, message):
    path = _save_npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError) as error:
        load_npz(path)
    _one_line(error, f"{path}: ", message)


def test_npz_and_npy_with_pickled_objects_are_refused_unread(tmp_path):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "o.npz", x=np.array([CreatesFile(marker), 1], dtype=object))
    np.save(tmp_path / "o.npy", np.array([CreatesFile(marker)], dtype=object), allow_pickle=True)
    write_pickle(tmp_path / "p.npy", CreatesFile(marker))
    for name, message in (("o.npz", "array 'x' holds pickled Python objects; refused"),
                          ("o.npy", "holds pickled Python objects; refused"),
                          ("p.npy", "holds pickled Python objects; refused")):
        with pytest.raises(DataError) as error:
            load_npz(tmp_path / name)
        _one_line(error, f"{tmp_path / name}: ", message)
    assert not marker.exists()


@pytest.mark.parametrize("name, raw", [("z.npy", np.array(5)), ("bad.npz", b"PK\x03\x04 broken zip")],
                         ids=["0-d-npy", "broken-zip"])
def test_npy_0d_and_broken_npz(tmp_path, name, raw):
    path = tmp_path / name
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    else:
        np.save(path, raw)
    with pytest.raises(DataError) as error:
        load_data("npz", path, (1,), 256)
    _one_line(error, f"{path}: ")


def test_npz_labels_beyond_declared_classes_name_the_spec_field(tmp_path):
    path = _save_npz(tmp_path / "d.npz", x_train=np.zeros((3, 2)), x_test=np.zeros((2, 2)),
                     y_train=np.array([0, 1, 2]), y_test=np.array([0, 3]))
    with pytest.raises(DataError) as error:
        load_data("npz", path, (2,), None, classes=3)
    _one_line(error, f"{path}: label 3 in labels_test is outside 0..2 (condition.classes: 3)")


def test_nan_in_discrete_float_data_is_reported_as_data(tmp_path):
    path = _save_npz(tmp_path / "d.npz", train=np.array([[0.0, 1.0], [np.inf, 2.0]]), test=np.zeros((1, 2)))
    with pytest.raises(DataError) as error:
        load_data("npz", path, (2,), 4)
    _one_line(error, f"{path}: train holds 1 NaN or inf values (first in row 1, column 0)")


@pytest.mark.parametrize("text, kwargs, message", [
    ("a,b\n1,2\n3,x\n", {}, "t.csv:3: column 'b': 'x' is not a number"),
    ("a,b\n1,2\n3,nan\n", {}, "t.csv:3: column 'b': nan is not a finite number"),
    ("a,b\n1,2\n3,-inf\n", {}, "t.csv:3: column 'b': -inf is not a finite number"),
    ("a,b\n1,2\n3\n", {}, "t.csv:3: 1 fields, the header has 2"),
    ("a,b\n1,2\n3,\n", {}, "t.csv:3: column 'b': '' is not a number"),
    ("a,b\n1,2\n3,4\n", {"label": "kind"}, "t.csv: no column 'kind'; the header names ['a', 'b']"),
    ("a,b\n1,2\n3,4\n", {"context": ["a", "b"]}, "no feature columns left"),
    ("a,b\n1,-2\n3,4\n", {"label": "b"}, "t.csv:2: column 'b': label -2 is negative"),
    ("a,a\n1,2\n", {}, "t.csv:1: columns named twice: ['a']"),
    ("", {}, "t.csv: empty; expected a header row"),
    ("a,b\n", {}, "t.csv: no rows after the header"),
], ids=["text", "nan", "inf", "short-row", "empty-cell", "unknown-label", "no-features", "negative-label",
        "duplicate", "empty", "header-only"])
def test_csv_cells_and_columns(tmp_path, text, kwargs, message):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError) as error:
        load_csv(tmp_path / "t.csv", **kwargs)
    _one_line(error, message)


def test_csv_that_is_not_text(tmp_path):
    (tmp_path / "t.csv").write_bytes(gzip.compress(b"a,b\n1,2\n"))
    with pytest.raises(DataError) as error:
        load_csv(tmp_path / "t.csv")
    _one_line(error, "t.csv: not UTF-8 text")


def test_csv_columns_on_other_kinds_are_refused():
    with pytest.raises(DataError, match="columns apply to csv tables only"):
        load_data("digits", None, (1, 8, 8), 17, label_column="kind")


class HugeArray:
    """``numpy.ndarray((10**12,))``: a terabyte asked for by a few bytes of pickle."""

    def __reduce__(self):
        return np.ndarray, ((10**12,), np.dtype(np.uint8))


class HugeReconstruct:
    def __reduce__(self):
        return np.zeros(1).__reduce__()[0], (np.ndarray, (10**12,), b"b")


@pytest.mark.parametrize("payload, message", [
    (HugeArray(), "not a CIFAR-10 python batch"),
    (HugeReconstruct(), "refused _reconstruct(numpy.ndarray, (1000000000000,))"),
], ids=["ndarray-call", "reconstruct-shape"])
def test_pickle_cannot_allocate_more_than_the_file_holds(tmp_path, payload, message):
    write_pickle(tmp_path / "data_batch_1", {b"data": payload, b"labels": []})
    write_pickle(tmp_path / "test_batch", cifar_batch(GOOD, [0, 1]))
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    _one_line(error, "data_batch_1: ", message)


@pytest.mark.parametrize("write, message", [
    (lambda path: write_png(path, np.full((4, 4), 1000, dtype=np.uint16)), "16-bit pixels (I;16"),
    (lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30), "not a readable image"),
], ids=["16-bit", "truncated-png"])
def test_image_folder_refuses_images_it_cannot_read_as_8_bit(tmp_path, write, message):
    write_png(tmp_path / "a.png", np.zeros((4, 4), dtype=np.uint8))
    write(tmp_path / "b.png")
    with pytest.raises(DataError) as error:
        load_data("folder", tmp_path, (1, 4, 4), 256)
    _one_line(error, f"{tmp_path / 'b.png'}: {message}")
