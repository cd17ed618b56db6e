"""Image folders, read with pillow; class subfolders give labels.

Layouts:

- ``DIR/train/`` and ``DIR/test/``, or one folder ``DIR/`` split 90/10 with a fixed seed;
- inside each, either images directly (no labels), or one subfolder per class
  (``DIR/train/cat/*.png``): the class of an image is its subfolder's name, classes are numbered in
  sorted order of their names, and :attr:`Dataset.classes` keeps the mapping. The test split uses the
  train split's classes; a test class that train lacks is an error.

Images are converted to grey (1 channel) or RGB (3 channels), values 0..255, and must share one size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowspec.data.dataset import Dataset, examples, labels, split_indices
from flowspec.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_images(files: list[Path], channels: int) -> np.ndarray:
    """The images as uint8 ``(N, channels, H, W)``."""
    from PIL import Image

    from flowspec.data.images import refuse_deep_pixels

    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"image folders give 1 (grey) or 3 (RGB) channels; the spec asks for {channels}")
    arrays = []
    for file in files:
        try:
            with Image.open(file) as image:
                refuse_deep_pixels(image, file)
                array = np.asarray(image.convert(mode), dtype=np.uint8)
        except DataError:
            raise
        except Exception as error:
            raise DataError(f"{file}: not a readable image ({type(error).__name__}: {error})") from None
        arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
    first = arrays[0].shape[1:]
    for file, array in zip(files, arrays):
        if array.shape[1:] != first:
            raise DataError(f"{file}: image of size {list(array.shape[1:])}, {files[0].name} is {list(first)}; "
                            f"all images must share one size")
    return np.stack(arrays)


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def class_folders(folder: Path) -> list[Path] | None:
    """The class subfolders of ``folder``, sorted by name, or None when it holds images directly."""
    direct = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    subfolders = sorted((p for p in folder.iterdir() if p.is_dir() and images_in(p)), key=lambda p: p.name)
    if direct or not subfolders:
        return None
    return subfolders


def _labelled(folder: Path, classes: list[str] | None) -> tuple[list[Path], np.ndarray | None, list[str] | None]:
    """Files under ``folder`` with their labels (by class subfolder), or without labels."""
    subfolders = class_folders(folder)
    if subfolders is None:
        return images_in(folder), None, None
    names = [p.name for p in subfolders]
    if classes is None:
        classes = names
    unknown = [name for name in names if name not in classes]
    if unknown:
        raise DataError(f"{folder}: class folders {unknown} are not among the train classes {classes}")
    files, found = [], []
    for sub in subfolders:
        images = images_in(sub)
        files += images
        found += [classes.index(sub.name)] * len(images)
    return files, np.array(found, dtype=np.int64), classes


def load_folder(folder: str | Path, channels: int) -> Dataset:
    """Images under ``folder`` (see the module's layouts), 256 levels, labelled by class subfolder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    hint = "put each class's images in a subfolder named after the class"
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        train_files, train_labels, classes = _labelled(folder / "train", None)
        test_files, test_labels, _ = _labelled(folder / "test", classes)
        if not train_files or not test_files:
            raise DataError(f"{folder}: train/ and test/ need at least one image each")
        if (train_labels is None) != (test_labels is None):
            raise DataError(f"{folder}: one of train/ and test/ has class subfolders and the other has not")
        train, test = read_images(train_files, channels), read_images(test_files, channels)
        files = {"train": folder / "train", "test": folder / "test"}
    else:
        all_files, all_labels, classes = _labelled(folder, None)
        if len(all_files) < 2:
            raise DataError(f"{folder}: needs at least 2 images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        images = read_images(all_files, channels)
        train_rows, test_rows = split_indices(len(images))
        train, test = images[train_rows], images[test_rows]
        train_labels = test_labels = None
        if all_labels is not None:
            train_labels, test_labels = all_labels[train_rows], all_labels[test_rows]
        files = {"train": folder, "test": folder}
    data = Dataset(f"folder:{folder.name}", examples(train), examples(test), levels=256,
                   files={**{k: str(v) for k, v in files.items()},
                          "labels_train": str(files["train"]), "labels_test": str(files["test"])},
                   info={"labels_hint": hint})
    if train_labels is not None:
        data.labels_train, data.labels_test = labels(train_labels), labels(test_labels)
        data.classes = tuple(classes)
    return data
