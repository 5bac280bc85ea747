"""Read every results file under a results root into one tidy DataFrame.

Files are checked one footer at a time (cheap: schema and metadata only), so a corrupt or foreign
file is named in the error; the data of all valid files is then read in one pyarrow dataset scan.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch
import yaml
from safetensors.torch import load_file

from experiments.results import SCHEMA, weights_path

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "results"


class ResultsError(ValueError):
    """A results file that cannot be used; the message names the file."""


def _runs_dir(root: str | Path) -> Path:
    root = Path(root)
    return root / "runs" if (root / "runs").is_dir() else root


def results_root(root: str | Path) -> Path:
    """The folder holding ``runs/`` and ``weights/``, whether given itself or as its ``runs/`` folder."""
    root = Path(root)
    return root.parent if root.name == "runs" and not (root / "runs").is_dir() else root


def result_files(root: str | Path = DEFAULT_ROOT) -> list[Path]:
    """Every ``*.parquet`` under ``root/runs`` (or under ``root`` itself), hidden temporaries excluded."""
    return sorted(p for p in _runs_dir(root).rglob("*.parquet") if not p.name.startswith("."))


def _check(path: Path) -> pa.Schema:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        raise ResultsError(f"{path}: not a readable parquet file ({err})") from err
    missing = [c for c in SCHEMA if c not in schema.names]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {', '.join(missing)}")
    return schema


def load_runs(root: str | Path = DEFAULT_ROOT, on_error: str = "raise") -> pd.DataFrame:
    """All rows of all results files, with the schema's columns in their declared dtypes.

    ``on_error="skip"`` leaves out a bad file with a warning naming it instead of raising.
    The results root is kept in ``frame.attrs["results_root"]``, so that a figure given only the frame
    can find the saved weights that belong to its rows (see :func:`load_weights`).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    good, schemas = [], []
    for path in result_files(root):
        try:
            schemas.append(_check(path))
            good.append(path)
        except ResultsError as err:
            if on_error == "raise":
                raise
            warnings.warn(f"skipping {err}", stacklevel=2)
    if not good:
        empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in SCHEMA.items()})
        empty.attrs["results_root"] = str(results_root(root))
        return empty
    schema = pa.unify_schemas([s.remove_metadata() for s in schemas])
    try:
        table = ds.dataset([str(p) for p in good], schema=schema, format="parquet").to_table()
    except (OSError, pa.ArrowException) as err:
        raise ResultsError(f"reading results under {root}: {err}") from err
    frame = table.to_pandas().astype({c: t for c, t in SCHEMA.items()})
    frame.attrs["results_root"] = str(results_root(root))
    return frame


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with every text column as a pandas ``category``: the results repeat a few dozen names over
    millions of rows, and boolean selection on categories is about 10x faster than on Arrow-backed strings
    (what ``analysis.figures.build_all`` does once before every figure and table)."""
    text = [c for c, t in SCHEMA.items() if t == "str" and c in frame]
    out = frame.astype({c: "category" for c in text})
    out.attrs.update(frame.attrs)
    return out


def load_weights(root: str | Path, experiment: str, run_id: str) -> dict[str, torch.Tensor]:
    """The initial and final weights a run saved (``initial/<layer>.weight``, …, ``seeds``), on the CPU.

    Tensors are stacked over replicates: (replicates, units, fan_in) for a linear layer; ``seeds`` says
    which seed each replicate is. Read with safetensors (no pickle); a missing file is a
    :class:`FileNotFoundError` naming the path.
    """
    path = weights_path(results_root(root), experiment, run_id)
    if not path.is_file():
        raise FileNotFoundError(f"no saved weights for run {run_id} of {experiment}: {path}")
    return load_file(str(path), device="cpu")


def load_metadata(root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """One row per results file: run id, status, wall time, git commit and the resolved config."""
    records = []
    for path in result_files(root):
        meta = {k.decode(): v.decode() for k, v in (_check(path).metadata or {}).items()}
        config = yaml.safe_load(meta.get("config", "{}")) or {}
        records.append({
            "path": str(path),
            "run_id": path.stem,
            "experiment": path.parent.name,
            "status": meta.get("status"),
            "wall_time_s": float(meta.get("wall_time_s", "nan")),
            "git_commit": meta.get("git_commit"),
            "diverged": json.loads(meta.get("diverged", "{}")),
            "config": config,
        })
    return pd.DataFrame.from_records(records)
