"""Labels and contexts travel with their examples: files in the real formats are read back row by row
aligned, class mappings are kept, and a conditional spec gets one clear line when data lacks them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_writers import write_cifar, write_idx_labels, write_mnist, write_pickle, cifar_batch, write_png

from flowspec.data import (Dataset, DataSplit, check_condition, load_cifar10, load_csv, load_data, load_digits,
                           load_folder, load_mnist, load_moons, load_npz, load_wine, standardized)
from flowspec.errors import DataError


def test_digits_labels_belong_to_their_images():
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    label_of = {}
    for image, target in zip(bunch.images.astype(np.uint8), bunch.target):
        label_of.setdefault(image.tobytes(), set()).add(int(target))
    data = load_digits()
    assert data.has_labels and data.classes == tuple("0123456789") and data.num_classes == 10
    for images, found in ((data.train, data.labels_train), (data.test, data.labels_test)):
        assert found.dtype == torch.int64 and found.shape == (len(images),)
        for image, label in zip(images[:, 0].numpy().astype(np.uint8), found.tolist()):
            assert label in label_of[image.tobytes()]


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_labels_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    train_labels, test_labels = rng.integers(0, 10, 7), rng.integers(0, 10, 3)
    # each image's pixels carry its label, so alignment is visible
    train = np.broadcast_to(train_labels[:, None, None], (7, 28, 28))
    test = np.broadcast_to(test_labels[:, None, None], (3, 28, 28))
    write_mnist(tmp_path, train, test, train_labels, test_labels, compress)
    data = load_data("mnist", tmp_path, (1, 28, 28), 256, classes=10)
    assert data.labels_train.tolist() == train_labels.tolist() and data.labels_test.tolist() == test_labels.tolist()
    assert torch.equal(data.train[:, 0, 0, 0].long(), data.labels_train)
    assert data.classes == tuple(str(k) for k in range(10))
    assert data.file("labels_test").endswith("t10k-labels-idx1-ubyte" + (".gz" if compress else ""))


def test_mnist_without_label_files_loads_and_a_class_spec_says_what_is_missing(tmp_path):
    write_mnist(tmp_path, np.zeros((4, 28, 28)), np.zeros((2, 28, 28)))
    assert not load_mnist(tmp_path).has_labels
    with pytest.raises(DataError, match=r"has no labels; the spec is class-conditional \(condition.classes: 10\)"
                                        r".*train-labels-idx1-ubyte"):
        load_data("mnist", tmp_path, (1, 28, 28), 256, classes=10)


def test_mnist_label_count_must_match_the_images(tmp_path):
    write_mnist(tmp_path, np.zeros((4, 28, 28)), np.zeros((2, 28, 28)), np.arange(3), np.arange(2))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: 3 labels for 4 images"):
        load_mnist(tmp_path)


def test_mnist_label_above_nine_is_named(tmp_path):
    write_mnist(tmp_path, np.zeros((2, 28, 28)), np.zeros((2, 28, 28)), np.array([1, 12]), np.arange(2))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: label 12 is outside 0..9"):
        load_mnist(tmp_path)


def test_cifar10_labels_round_trip_with_class_names(tmp_path):
    rng = np.random.default_rng(1)
    batches = {}
    for name, count in (("data_batch_1", 4), ("data_batch_2", 3), ("test_batch", 2)):
        found = rng.integers(0, 10, count).tolist()
        data = np.repeat(np.array(found, dtype=np.uint8)[:, None], 3072, axis=1)  # pixels carry the label
        batches[name] = (data, found)
    write_cifar(tmp_path / "cifar-10-batches-py", batches)
    data = load_data("cifar10", tmp_path, (3, 32, 32), 256, classes=10)
    assert data.labels_train.tolist() == batches["data_batch_1"][1] + batches["data_batch_2"][1]
    assert data.labels_test.tolist() == batches["test_batch"][1]
    assert torch.equal(data.train[:, 2, 31, 31].long(), data.labels_train)
    assert data.classes[0] == "airplane" and data.classes[9] == "truck"


def test_cifar10_batch_written_with_the_old_numpy_module_path(tmp_path):
    """Batches pickled by old numpy name ``numpy.core.multiarray._reconstruct`` (numpy 2 says ``_core``)."""
    data = np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8)
    for name in ("data_batch_1", "test_batch"):
        raw = (write_pickle(tmp_path / name, cifar_batch(data, [3, 4]))).read_bytes()
        (tmp_path / name).write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"cnumpy.core.multiarray\n_reconstruct" in (tmp_path / "test_batch").read_bytes()
    split = load_cifar10(tmp_path)
    assert np.array_equal(split.test.reshape(2, -1).numpy(), data) and split.labels_test.tolist() == [3, 4]


def _class_folder(root, counts, size=(5, 4)):
    """PNG images under root/<class>/, each filled with 10 * its class index."""
    for index, (name, count) in enumerate(sorted(counts.items())):
        for i in range(count):
            write_png(root / name / f"{i}.png", np.full(size, 10 * index))


def test_image_folder_classes_are_sorted_subfolder_names(tmp_path):
    _class_folder(tmp_path / "train", {"cat": 3, "ant": 2, "dog": 1})
    _class_folder(tmp_path / "test", {"cat": 1, "ant": 1, "dog": 1})
    data = load_data("folder", tmp_path, (1, 5, 4), 256, classes=3)
    assert data.classes == ("ant", "cat", "dog")
    assert data.labels_train.tolist() == [0, 0, 1, 1, 1, 2]
    assert torch.equal((data.train[:, 0, 0, 0] / 10).long(), data.labels_train)
    assert torch.equal((data.test[:, 0, 0, 0] / 10).long(), data.labels_test)


def test_image_folder_single_folder_split_keeps_labels_aligned(tmp_path):
    _class_folder(tmp_path, {"a": 6, "b": 6, "c": 8}, size=(3, 3))
    data = load_folder(tmp_path, 1)
    assert len(data.train) == 18 and len(data.test) == 2
    assert torch.equal((data.train[:, 0, 0, 0] / 10).long(), data.labels_train)
    assert torch.equal((data.test[:, 0, 0, 0] / 10).long(), data.labels_test)


def test_image_folder_test_class_unknown_to_train(tmp_path):
    _class_folder(tmp_path / "train", {"ant": 1, "cat": 1})
    _class_folder(tmp_path / "test", {"ant": 1, "bee": 1})
    with pytest.raises(DataError, match=r"test: class folders \['bee'\] are not among the train classes"):
        load_folder(tmp_path, 1)


def test_image_folder_without_classes_has_no_labels(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", np.full((4, 4), i))
    assert not load_folder(tmp_path, 1).has_labels


def test_npz_x_y_c_split_together(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 3, c=x[:, :1] * 2)
    data = load_data("npz", tmp_path / "d.npz", (2,), None, classes=3, context_dim=1)
    assert len(data.train) == 18 and data.context_dim == 1
    for examples, found, context in ((data.train, data.labels_train, data.context_train),
                                     (data.test, data.labels_test, data.context_test)):
        rows = (examples[:, 0] / 2).long()
        assert torch.equal(found, rows % 3) and torch.equal(context[:, 0], examples[:, 0] * 2)


def test_npz_train_test_pairs_with_labels_and_contexts(tmp_path):
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 4, (6, 3)), x_test=rng.integers(0, 4, (2, 3)),
             y_train=[0, 1, 0, 1, 0, 1], y_test=[1, 0], c_train=rng.normal(size=(6, 5)), c_test=rng.normal(size=(2, 5)))
    data = load_npz(tmp_path / "d.npz", (3,), 4)
    assert data.levels == 4 and data.labels_test.tolist() == [1, 0] and data.context_dim == 5
    check_condition(data, classes=2, context_dim=5)
    with pytest.raises(DataError, match=r"d.npz: context_train has shape \[6, 5\], the spec's condition.dim is 4"):
        check_condition(data, context_dim=4)


def test_npz_labels_out_of_range_name_file_and_field(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 2)), y=np.array([0, 1, 2, 7, 1, 0, 1, 2, 0, 1]))
    with pytest.raises(DataError, match=r"d.npz: label 7 in labels_\w+ is outside 0..4 \(condition.classes: 5\)"):
        load_data("npz", tmp_path / "d.npz", (2,), None, classes=5)


def test_npz_without_labels_for_a_class_spec(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 2)))
    with pytest.raises(DataError, match=r"d.npz: data set 'npz:d.npz' has no labels.*add y"):
        load_data("npz", tmp_path / "d.npz", (2,), None, classes=5)


CSV = """\
alcohol,acid,temperature,kind
1.5,0.25,20,red
2.5,0.5,21,white
3.5,0.75,22,red
4.5,1.0,23,rose
5.5,1.25,24,white
6.5,1.5,25,red
7.5,1.75,26,red
8.5,2.0,27,white
9.5,2.25,28,red
10.5,2.5,29,rose
"""


def test_csv_features_context_and_named_classes(tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    data = load_data("csv", tmp_path / "t.csv", (2,), None, classes=3, context_dim=1,
                     context_columns=["temperature"], label_column="kind")
    assert data.info["features"] == ["alcohol", "acid"] and data.classes == ("red", "rose", "white")
    assert len(data.train) == 9 and len(data.test) == 1
    for examples, context, found in ((data.train, data.context_train, data.labels_train),
                                     (data.test, data.context_test, data.labels_test)):
        rows = (examples[:, 0] - 1.5).long()  # row index from the first feature
        assert torch.equal(context[:, 0], rows.float() + 20)
        kinds = [line.split(",")[3] for line in CSV.splitlines()[1:]]
        assert [data.classes[k] for k in found.tolist()] == [kinds[r] for r in rows.tolist()]


def test_csv_train_and_test_files_share_the_train_classes(tmp_path):
    lines = CSV.splitlines()
    (tmp_path / "train.csv").write_text("\n".join(lines[:8]) + "\n")
    (tmp_path / "test.csv").write_text("\n".join([lines[0]] + lines[8:]) + "\n")
    data = load_csv(tmp_path, features=["acid"], label="kind")
    assert data.shape == (1,) and [data.classes[k] for k in data.labels_test.tolist()] == ["white", "red", "rose"]
    (tmp_path / "test.csv").write_text(lines[0] + "\n1,2,3,sparkling\n")
    with pytest.raises(DataError, match=r"test.csv:2: column 'kind': class 'sparkling' is not among the train"):
        load_csv(tmp_path, features=["acid"], label="kind")


def test_wine_and_moons_are_continuous_with_labels():
    wine = load_data("wine", None, (13,), None, classes=3)
    assert wine.continuous and wine.shape == (13,) and len(wine.train) + len(wine.test) == 178
    assert set(wine.labels_train.tolist()) == {0, 1, 2}
    moons = load_moons()
    upper = moons.train[moons.labels_train == 0, 1].mean()
    lower = moons.train[moons.labels_train == 1, 1].mean()
    assert moons.shape == (2,) and upper > lower  # label 0 is the upper moon
    with pytest.raises(DataError, match=r"wine.*non-integer \(continuous\) values.*input.data: continuous"):
        load_data("wine", None, (13,), 256)


def test_standardisation_uses_train_statistics_and_maps_back():
    raw = load_wine()
    data = load_data("wine", None, (13,), None, standardize=True)
    assert torch.allclose(data.train.mean(0), torch.zeros(13), atol=1e-5)
    assert torch.allclose(data.train.std(0, unbiased=False), torch.ones(13), atol=1e-4)
    assert torch.allclose(data.unstandardize(data.test), raw.test, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(data.test.mean(0), torch.zeros(13), atol=1e-5)  # test scaled by train figures
    with pytest.raises(DataError, match="standardisation applies to continuous data"):
        standardized(load_digits())


def test_take_and_one_hot_keep_rows_aligned():
    data = load_digits().take(50, 20)
    assert len(data.train) == len(data.labels_train) == 50 and len(data.test) == len(data.labels_test) == 20
    onehot = data.labels_as_context()
    assert onehot.context_dim == 10 and torch.equal(onehot.context_train.argmax(1), data.labels_train)
    assert onehot.summary() == "digits: 50 train / 20 test, shape [1, 8, 8], 17 levels, labels (10 classes), context (10)"
    assert DataSplit is Dataset and DataSplit("x", data.train, data.test, levels=17).labels_train is None


def test_check_condition_on_hand_built_datasets():
    x = torch.zeros(4, 2)
    data = Dataset("hand", x, x[:2], levels=None, labels_train=torch.tensor([0, 1, 2, 1]),
                   labels_test=torch.tensor([0]), context_train=torch.zeros(4, 3), context_test=torch.zeros(2, 3))
    with pytest.raises(DataError, match=r"hand: 1 labels in labels_test for 2 examples"):
        check_condition(data, classes=3)
    data.labels_test = torch.tensor([0, 2])
    check_condition(data, classes=3, context_dim=3)
    data.context_test = torch.tensor([[0.0, float("nan"), 0.0]] * 2)
    with pytest.raises(DataError, match=r"hand: NaN or inf values in context_test; contexts must be finite"):
        check_condition(data, context_dim=3)
