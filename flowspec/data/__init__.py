"""Data sets for training, read from local files only (nothing is downloaded).

Every loader returns a :class:`DataSplit`: integer-valued float tensors ``(N, *shape)`` with values
``0 .. levels-1`` for the train and test parts. :func:`load_data` checks them against the spec's
``input`` (shape and levels) and raises :class:`~flowspec.errors.DataError` when they do not fit.
"""

from flowspec.data.loaders import (DATA_KINDS, DataSplit, check_fits, load_cifar10, load_data, load_digits,
                                   load_folder, load_mnist, load_npz)

__all__ = ["DATA_KINDS", "DataSplit", "check_fits", "load_cifar10", "load_data", "load_digits", "load_folder",
           "load_mnist", "load_npz"]
