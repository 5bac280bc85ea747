"""The results contract: schema, metadata, atomic writes, skipping, overwrite, divergence."""

from __future__ import annotations

import json
import logging

import pyarrow.parquet as pq
import pytest
import yaml

from analysis.load import ResultsError, load_metadata, load_runs
from experiments.config import run_id
from experiments.experiment import run
from experiments.results import SCHEMA
from tests.conftest import make_cfg, parquet_files


def test_schema_dtypes_and_epoch_zero(tmp_path):
    run(make_cfg("width=3", "epochs=2", "null_samples=5"), tmp_path)
    (path,) = parquet_files(tmp_path)
    assert path.parent.name == "source"
    df = load_runs(tmp_path)
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        c: ("str" if t == "str" else t) for c, t in SCHEMA.items()}
    trained = df[df.kind == "trained"]
    assert sorted(trained.epoch.unique()) == [0, 1, 2]
    assert set(trained[trained.epoch == 0].layer) == {"model", "hidden", "bottleneck", "head"}
    null = df[df.kind == "null"]
    assert set(null.epoch) == {0} and null.seed.nunique() == 5
    assert set(df.width) == {3} and set(trained.seed) == {10000}


def test_metadata_holds_provenance(tmp_path):
    cfg = make_cfg("width=3", "epochs=1", "null_samples=0")
    run(cfg, tmp_path)
    (path,) = parquet_files(tmp_path)
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}
    assert meta["status"] == "completed"
    assert yaml.safe_load(meta["config"])["width"] == 3
    assert json.loads(meta["versions"])["torch"].startswith("2.13.0")
    assert meta["git_commit"]
    assert float(meta["wall_time_s"]) > 0
    assert path.stem == run_id(cfg)
    assert load_metadata(tmp_path).status.tolist() == ["completed"]


def test_run_id_ignores_execution_keys_only():
    base = run_id(make_cfg("width=3"))
    assert run_id(make_cfg("width=3", "results_dir=/elsewhere", "overwrite=true", "threads=1")) == base
    assert run_id(make_cfg("width=4")) != base
    assert run_id(make_cfg("width=3", "model.protocol=clean")) != base


def test_atomic_write_skip_and_overwrite(tmp_path, caplog):
    cfg = make_cfg("width=3", "epochs=1", "null_samples=0")
    run(cfg, tmp_path)
    (path,) = parquet_files(tmp_path)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temporary file left behind"
    stamp = path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        run(cfg, tmp_path)
    assert path.stat().st_mtime_ns == stamp
    assert any("skip" in r.message for r in caplog.records)
    cfg.overwrite = True
    run(cfg, tmp_path)
    assert path.stat().st_mtime_ns != stamp
    assert len(parquet_files(tmp_path)) == 1


def test_incomplete_file_is_redone(tmp_path):
    cfg = make_cfg("width=3", "epochs=1", "null_samples=0")
    run(cfg, tmp_path)
    (path,) = parquet_files(tmp_path)
    path.write_bytes(b"truncated")
    run(cfg, tmp_path)
    assert len(load_runs(tmp_path)) > 0


def test_divergence_keeps_rows_and_marks_status(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        df = run(make_cfg("width=4", "epochs=30", "optim.lr=1e30", "null_samples=0"), tmp_path)
    meta = load_metadata(tmp_path)
    assert meta.status.tolist() == ["diverged"]
    (epoch,) = meta.diverged[0].values()
    loss = df[df.metric == "loss"]
    assert loss.epoch.max() == epoch < 30
    assert any("non-finite" in r.message for r in caplog.records)


def test_corrupt_file_named_or_skipped(tmp_path):
    run(make_cfg("width=3", "epochs=1", "null_samples=0"), tmp_path)
    bad = tmp_path / "runs" / "source" / "broken.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ResultsError, match=r"broken\.parquet"):
        load_runs(tmp_path)
    with pytest.warns(UserWarning, match=r"broken\.parquet"):
        df = load_runs(tmp_path, on_error="skip")
    assert len(df) > 0


def test_foreign_parquet_named(tmp_path):
    import pandas as pd

    (tmp_path / "runs" / "x").mkdir(parents=True)
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "runs" / "x" / "other.parquet")
    with pytest.raises(ResultsError, match=r"other.parquet: missing column"):
        load_runs(tmp_path)


def test_empty_root_gives_empty_frame(tmp_path):
    df = load_runs(tmp_path)
    assert df.empty and list(df.columns) == list(SCHEMA)
