"""Data sets that scikit-learn ships or generates (no file, no download).

- ``digits``: the 8x8 digits, ``(N, 1, 8, 8)``, grey levels 0..16 (17 levels), labels 0..9; a fixed
  seeded split of 1497 train / 300 test images.
- ``wine``: the wine recognition table, 178 rows of 13 real-valued chemical measurements, labels the
  3 cultivars; continuous, split 80/20 with a fixed seed.
- ``diabetes``: scikit-learn's diabetes table in its original units (``scaled=False``), 442 rows of
  11 mixed columns: the 10 features (age in years, sex recoded 0/1, body mass index, mean blood
  pressure, six blood serum measurements) and the disease progression a year later (an integer);
  no labels; split 80/20 with a fixed seed. ``specs/diabetes-mixed.yaml`` types its columns.
- ``moons``: the generated two moons in 2-D, ``make_moons(n, noise=0.1)`` with a fixed seed, labels
  which moon (0 the upper, 1 the lower); continuous, split 80/20.
"""

from __future__ import annotations

import numpy as np

from flowspec.data.dataset import SPLIT_SEED, Dataset, examples, labels, split_indices

DIGITS_TEST = 300
TABLE_TEST_FRACTION = 0.2


def load_digits() -> Dataset:
    """The bundled 8x8 digits, ``(N, 1, 8, 8)``, 17 levels, labels 0..9; 300 test images (seeded split)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = bunch.images.astype(np.int64)[:, None]  # (1797, 1, 8, 8), values 0..16
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    train, test = order[DIGITS_TEST:], order[:DIGITS_TEST]
    return Dataset("digits", examples(images[train]), examples(images[test]), levels=17,
                   labels_train=labels(bunch.target[train]), labels_test=labels(bunch.target[test]),
                   classes=tuple(str(k) for k in range(10)), files={"data": "scikit-learn digits"})


def load_wine() -> Dataset:
    """The wine table, ``(N, 13)`` real values, labels the 3 cultivars; 80/20 seeded split."""
    from sklearn.datasets import load_wine as sklearn_wine

    bunch = sklearn_wine()
    train, test = split_indices(len(bunch.data), TABLE_TEST_FRACTION)
    return Dataset("wine", examples(bunch.data[train]), examples(bunch.data[test]), levels=None,
                   labels_train=labels(bunch.target[train]), labels_test=labels(bunch.target[test]),
                   classes=tuple(str(name) for name in bunch.target_names), files={"data": "scikit-learn wine"},
                   info={"features": list(bunch.feature_names)})


def load_diabetes() -> Dataset:
    """The diabetes table in original units, ``(442, 11)``: features then progression; sex as 0/1."""
    from sklearn.datasets import load_diabetes as sklearn_diabetes

    bunch = sklearn_diabetes(scaled=False)
    table = np.concatenate([bunch.data, bunch.target[:, None]], axis=1)
    table[:, 1] -= 1  # sex: the table's codes 1, 2 as category codes 0, 1
    train, test = split_indices(len(table), TABLE_TEST_FRACTION)
    return Dataset("diabetes", examples(table[train]), examples(table[test]), levels=None,
                   files={"data": "scikit-learn diabetes (scaled=False)"},
                   info={"features": list(bunch.feature_names) + ["progression"]})


def load_moons(n: int = 2000, noise: float = 0.1) -> Dataset:
    """Two moons, ``(N, 2)`` real values, labels the moon (0 upper, 1 lower); 80/20 seeded split."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, random_state=SPLIT_SEED)
    train, test = split_indices(n, TABLE_TEST_FRACTION)
    return Dataset("moons", examples(x[train]), examples(x[test]), levels=None,
                   labels_train=labels(y[train]), labels_test=labels(y[test]), classes=("upper", "lower"),
                   files={"data": "scikit-learn make_moons"}, info={"features": ["x", "y"], "noise": noise})
