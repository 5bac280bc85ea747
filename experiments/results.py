"""The results contract (SPEC §7): one parquet file per job, written atomically, with its provenance.

``results/runs/<experiment>/<run_id>.parquet`` holds tidy rows; its key-value metadata holds the
resolved config, package versions, git commit, wall time and status. Initial and final weights go
in a parallel tree, ``results/weights/<experiment>/<run_id>.safetensors`` (no pickle), so that
``results/runs/`` holds nothing but parquet and ``pd.read_parquet("results/runs")`` reads it whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

from experiments.paths import REPO_ROOT

# Column -> pandas dtype of every results file. Analysis validates files against this.
SCHEMA = {
    "experiment": "str",
    "run_id": "str",
    "model": "str",
    "kind": "str",
    "protocol": "str",
    "activation": "str",
    "data": "str",             # the data set (integers, digits, mnist1d)
    "block": "str",
    "channels": "int64",
    "width": "int64",
    "seed": "int64",
    "epoch": "int64",
    "layer": "str",
    "metric": "str",
    "value": "float64",
    "method": "str",           # compression runs: alds, uniform, svd_energy, best_k, none (uncompressed)
    "keep_ratio": "float64",   # compression runs: target kept / original weights; 1.0 elsewhere
    "stage": "str",            # compression runs: initial or final weights; "none" elsewhere
}
# What the compression columns hold in every other run.
NOT_COMPRESSED = {"method": "none", "keep_ratio": 1.0, "stage": "none"}
ARROW_SCHEMA = pa.schema([
    (name, pa.string() if dtype == "str" else pa.int64() if dtype == "int64" else pa.float64())
    for name, dtype in SCHEMA.items()
])
COMPLETE_STATUSES = ("completed", "diverged")
PACKAGES = ("torch", "numpy", "pandas", "pyarrow", "hydra-core", "omegaconf")


def results_path(root: Path, experiment: str, run_id: str) -> Path:
    return Path(root) / "runs" / experiment / f"{run_id}.parquet"


def weights_path(root: Path, experiment: str, run_id: str) -> Path:
    return Path(root) / "weights" / experiment / f"{run_id}.safetensors"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def git_commit() -> str:
    """HEAD of the repository, with ``-dirty`` when the tree has uncommitted changes; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def read_status(path: Path) -> str | None:
    """The status stored in a results file, or None when it is missing or unreadable."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    status = meta.get(b"status")
    return status.decode() if status else None


def is_complete(path: Path) -> bool:
    return path.exists() and read_status(path) in COMPLETE_STATUSES


def atomic_write(path: Path, write) -> None:
    """Write through a hidden temporary file in the same folder, then rename over the target.

    A killed job leaves at most a dot-file that readers ignore, never a truncated ``.parquet``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: Path) -> None:
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def write_results(frame: pd.DataFrame, path: Path, meta: dict[str, str]) -> None:
    table = pa.Table.from_pandas(frame[list(SCHEMA)], schema=ARROW_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({k: str(v) for k, v in meta.items()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def write_weights(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(contiguous, tmp, metadata=meta))


def metadata(config_yaml: str, wall_seconds: float, status: str, **extra: object) -> dict[str, str]:
    meta = {
        "config": config_yaml,
        "versions": json.dumps(package_versions()),
        "git_commit": git_commit(),
        "wall_time_s": f"{wall_seconds:.3f}",
        "status": status,
    }
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta
