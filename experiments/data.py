"""Data sets: one full training batch and a fixed evaluation batch, loaded once per job and shared by all replicates.

Every loader returns a :class:`Data`. The split never depends on the run's seed (only on ``split_seed``), so
every run and every replicate sees the same images; it is cached, so the replicates of a job, the null and
the evaluation share one copy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

DIGITS_IMAGES = 1797  # sklearn.datasets.load_digits: 8x8 images, 10 classes


@dataclass(frozen=True)
class Data:
    """``x``/``labels``: the training batch; ``eval_x``/``eval_labels``: the held-out evaluation batch.

    Inputs are float32 (N, features) or (N, channels, H, W); labels are int64 class indices, or None for a
    data set without classes. What a model is trained to output (the input itself, or the label) is its
    family's task, not the data's (``experiments.tasks``).
    """

    x: torch.Tensor
    eval_x: torch.Tensor
    labels: torch.Tensor | None = None
    eval_labels: torch.Tensor | None = None

    def to(self, device: torch.device) -> Data:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Data(move(self.x), move(self.eval_x), move(self.labels), move(self.eval_labels))


def integers(n: int = 100) -> Data:
    """The source's identity task: the integers 0..n-1 as a float32 column (n, 1). The evaluation batch is the
    same n inputs: the source has no held-out data, and its whole input range is these points."""
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1)
    return Data(x, x.clone())


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: nothing is downloaded

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


def stratified_split(labels: np.ndarray, n_train: int, n_eval: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a training and an evaluation set whose class proportions both follow the whole set's.

    The images are shuffled once with ``seed`` and interleaved class by class (each class's images spread
    evenly over the order), so any prefix is stratified up to one image per class; the first ``n_train``
    indices train, the next ``n_eval`` evaluate.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    position = np.empty(len(labels))
    for c in np.unique(labels):
        members = order[labels[order] == c]
        # The k-th of m members of a class sits at (k + 0.5) / m along the order; ties broken by class.
        position[members] = (np.arange(len(members)) + 0.5) / len(members) + c * 1e-9
    ranked = np.argsort(position, kind="stable")
    return ranked[:n_train], ranked[n_train:n_train + n_eval]


@functools.cache
def digits(n_train: int = 1000, n_eval: int = 500, split_seed: int = 0) -> Data:
    """scikit-learn's bundled 8x8 ``digits`` (1,797 images), scaled to [0, 1], as (N, 1, 8, 8) float32.

    A fixed stratified split (``split_seed``, not the run's seed) into ``n_train`` training and ``n_eval``
    evaluation images; labels come along for the classifier families.
    """
    if n_train < 1 or n_eval < 1 or n_train + n_eval > DIGITS_IMAGES:
        raise ValueError(f"digits: need 1 <= n_train, n_eval and n_train + n_eval <= {DIGITS_IMAGES}, "
                         f"got {n_train} + {n_eval}")
    images, labels = _digits_arrays()
    train, held_out = stratified_split(labels, n_train, n_eval, split_seed)
    as_x = lambda idx: torch.from_numpy(images[idx]).unsqueeze(1).contiguous()  # noqa: E731
    as_y = lambda idx: torch.from_numpy(labels[idx]).contiguous()  # noqa: E731
    return Data(as_x(train), as_x(held_out), as_y(train), as_y(held_out))


def load(cfg_data) -> Data:
    """The data set a config's ``data`` group names (``cfg.data``), with only the keys it uses."""
    if cfg_data.name == "integers":
        return integers(int(cfg_data.n))
    if cfg_data.name == "digits":
        return digits(int(cfg_data.n_train), int(cfg_data.n_eval), int(cfg_data.split_seed))
    raise ValueError(f"unknown data set {cfg_data.name!r}")
