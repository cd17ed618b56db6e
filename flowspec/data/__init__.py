"""Data sets for training, read from local files only (nothing is downloaded).

Every loader returns a :class:`Dataset`: float32 examples ``(N, *shape)`` for the train and test parts,
integers ``0 .. levels-1`` for discrete data or any finite values for continuous data
(``levels`` None), and, aligned row by row, optional int64 class labels ``(N,)`` (``labels_train``,
``labels_test``, names in ``classes``) and float32 context vectors ``(N, C)`` (``context_train``,
``context_test``). ``DataSplit`` is the former name of ``Dataset``.

:func:`load_data` loads a kind and checks it against the spec: input shape and levels
(:func:`check_fits`), labels in range for a class-conditional spec and contexts of the right width for
a context-conditional one (:func:`check_condition`). Every problem is one
:class:`~flowspec.errors.DataError` line naming the file and the spec field.

A conditional training run is one call::

    data = load_data(kind, data_dir, shape, levels, classes=10)        # labels 0..9 required
    data = load_data("npz", "d.npz", (4,), None, context_dim=3)       # continuous, contexts (N, 3)
"""

from flowspec.data.bundled import load_digits, load_moons, load_wine
from flowspec.data.cifar import CIFAR10_CLASSES, load_cifar10, read_cifar_batch
from flowspec.data.dataset import Dataset, DataSplit, check_condition, check_fits, split_indices, standardized
from flowspec.data.folder import load_folder
from flowspec.data.loaders import BUNDLED_KINDS, DATA_KINDS, load_data
from flowspec.data.mnist import load_mnist, read_idx_images, read_idx_labels
from flowspec.data.npz import load_npz
from flowspec.data.safe_pickle import PlainDataUnpickler, load_plain_pickle
from flowspec.data.table import load_csv

__all__ = ["BUNDLED_KINDS", "CIFAR10_CLASSES", "DATA_KINDS", "DataSplit", "Dataset", "PlainDataUnpickler",
           "check_condition", "check_fits", "load_cifar10", "load_csv", "load_data", "load_digits", "load_folder",
           "load_mnist", "load_moons", "load_npz", "load_plain_pickle", "load_wine", "read_cifar_batch",
           "read_idx_images", "read_idx_labels", "split_indices", "standardized"]
