"""Data sets: one full training batch and a fixed evaluation batch, loaded once per job and shared by all replicates.

Every loader returns a :class:`Data`. The split never depends on the run's seed (only on ``split_seed``), so
every run and every replicate sees the same images; it is cached, so the replicates of a job, the null and
the evaluation share one copy.
"""

from __future__ import annotations

import functools
import logging
import zipfile
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DIGITS_IMAGES = 1797  # sklearn.datasets.load_digits: 8x8 images, 10 classes
MNIST1D_TRAIN, MNIST1D_TEST, MNIST1D_LENGTH = 4000, 1000, 40  # the published split of MNIST-1D
# What each data set feeds a model: a family states which of these it takes (experiments.families).
INPUT_KINDS = {"integers": "vector", "digits": "image", "mnist1d": "signal"}


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


def generate_mnist1d() -> dict[str, np.ndarray]:
    """MNIST-1D from the ``mnist1d`` package's procedural generator with its default arguments (Greydanus &
    Kobak, ICML 2024): ``x`` (4000, 40), ``x_test`` (1000, 40) as float32 and labels ``y``, ``y_test`` as int64.

    Offline and deterministic (the generator seeds itself); in float32 it equals the published
    ``mnist1d_data.pkl`` (``tests/test_mnist1d.py`` checks the checksums). The package's ``get_dataset`` is never
    used: it tries a download and writes a pickle into the working directory.
    """
    from mnist1d.data import get_dataset_args, make_dataset  # imports requests and matplotlib: only when needed

    raw = make_dataset(get_dataset_args())
    return {"x": np.asarray(raw["x"], dtype=np.float32), "y": np.asarray(raw["y"], dtype=np.int64),
            "x_test": np.asarray(raw["x_test"], dtype=np.float32),
            "y_test": np.asarray(raw["y_test"], dtype=np.int64)}


def mnist1d_cache_path(cache_dir: str | Path) -> Path:
    """Where the generated arrays are cached: one file per version of the ``mnist1d`` package."""
    try:
        version = importlib_metadata.version("mnist1d")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    return Path(cache_dir) / f"mnist1d-{version}-default-args.npz"


@functools.cache
def mnist1d_arrays(cache_dir: str) -> dict[str, np.ndarray]:
    """The MNIST-1D arrays, generated once (a few seconds) and cached under ``cache_dir``, written atomically.

    A cache file that cannot be read, or holds arrays of the wrong shape, is regenerated and replaced.
    """
    from experiments.results import atomic_write

    path = mnist1d_cache_path(cache_dir)
    shapes = {"x": (MNIST1D_TRAIN, MNIST1D_LENGTH), "y": (MNIST1D_TRAIN,),
              "x_test": (MNIST1D_TEST, MNIST1D_LENGTH), "y_test": (MNIST1D_TEST,)}
    if path.is_file():
        try:
            with np.load(path) as stored:
                arrays = {k: stored[k] for k in shapes}
            if all(arrays[k].shape == shape for k, shape in shapes.items()):
                return arrays
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # a truncated .npz: BadZipFile
            pass
        log.warning("MNIST-1D cache %s is unreadable or incomplete: regenerating it", path)
    log.info("generating MNIST-1D (a few seconds; cached in %s)", path)
    arrays = generate_mnist1d()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)
    return arrays


@functools.cache
def mnist1d(n_train: int = MNIST1D_TRAIN, n_eval: int = MNIST1D_TEST, cache_dir: str = ".") -> Data:
    """MNIST-1D's published split: the first ``n_train`` of its 4,000 training signals and the first ``n_eval``
    of its 1,000 test signals (the generator's order is already random), as float32 (N, 40), with labels."""
    if not (1 <= n_train <= MNIST1D_TRAIN and 1 <= n_eval <= MNIST1D_TEST):
        raise ValueError(f"mnist1d: need 1 <= n_train <= {MNIST1D_TRAIN} and 1 <= n_eval <= {MNIST1D_TEST}, "
                         f"got {n_train}, {n_eval}")
    a = mnist1d_arrays(str(cache_dir))
    t = lambda v: torch.from_numpy(np.ascontiguousarray(v))  # noqa: E731
    return Data(t(a["x"][:n_train]), t(a["x_test"][:n_eval]), t(a["y"][:n_train]), t(a["y_test"][:n_eval]))


def features(cfg_data) -> int:
    """Features of one example of a config's data set (D: 1, 64 or 40)."""
    return {"integers": 1, "digits": 64, "mnist1d": MNIST1D_LENGTH}[cfg_data.name]


def train_size(cfg_data) -> int:
    """Training examples of a config's data set (the integers: all n of them, its only data)."""
    return {"integers": lambda: int(cfg_data.n), "digits": lambda: int(cfg_data.n_train),
            "mnist1d": lambda: int(cfg_data.n_train)}[cfg_data.name]()


def eval_size(cfg_data) -> int:
    """Held-out examples of a config's data set (the integers: the same n inputs, it has no held-out data)."""
    return {"integers": lambda: int(cfg_data.n), "digits": lambda: int(cfg_data.n_eval),
            "mnist1d": lambda: int(cfg_data.n_eval)}[cfg_data.name]()


def load(cfg_data) -> Data:
    """The data set a config's ``data`` group names (``cfg.data``), with only the keys it uses."""
    if cfg_data.name == "integers":
        return integers(int(cfg_data.n))
    if cfg_data.name == "digits":
        return digits(int(cfg_data.n_train), int(cfg_data.n_eval), int(cfg_data.split_seed))
    if cfg_data.name == "mnist1d":
        return mnist1d(int(cfg_data.n_train), int(cfg_data.n_eval), str(cfg_data.cache_dir))
    raise ValueError(f"unknown data set {cfg_data.name!r}")
