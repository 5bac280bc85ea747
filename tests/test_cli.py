"""The real command line: bad input, a tiny multirun, and a sweep that survives one diverging job."""

from __future__ import annotations

import pytest

from analysis.load import load_metadata, load_runs
from experiments.config import CONF_DIR
from tests.conftest import cli, parquet_files

BAD_INPUTS = [
    ("width=0", "width"),
    ("width=-3", "width"),
    ("width=2.5", "width"),
    ("width=abc", "width"),
    ("epochs=-1", "epochs"),
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-1e-3", "optim.lr"),
    ("model=transformer", "model"),
    ("experiment=nope", "experiment"),
    ("model.protocol=weird", "model.protocol"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("override", "key"), BAD_INPUTS)
def test_bad_input_is_one_clear_error(override, key, tmp_path):
    proc = cli(override, "epochs=1", results=tmp_path) if not override.startswith("epochs") \
        else cli(override, results=tmp_path)
    assert proc.returncode != 0
    error_lines = [line for line in proc.stderr.splitlines() if key in line]
    assert error_lines, proc.stderr
    assert not parquet_files(tmp_path)


@pytest.mark.slow
def test_unknown_group_lists_allowed_values(tmp_path):
    proc = cli("-m", "model=mlp,transformer", results=tmp_path)
    assert proc.returncode == 2
    # The allowed values are whatever conf/model/ holds, so the expectation is read from the folder.
    allowed = ", ".join(sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml")))
    assert proc.stderr.strip().splitlines() == [f"error: model: unknown value 'transformer' (allowed: {allowed})"]


@pytest.mark.slow
def test_tiny_multirun_writes_one_file_per_job(tmp_path):
    cli("-m", "width=2,3", "epochs=2", "null_samples=5", results=tmp_path, check=True)
    files = parquet_files(tmp_path)
    assert len(files) == 2
    assert sorted(load_runs(tmp_path).width.unique()) == [2, 3]


@pytest.mark.slow
def test_diverging_job_does_not_sink_the_sweep(tmp_path):
    proc = cli("-m", "optim.lr=1e30,1e-3", "width=4", "epochs=30", "null_samples=0", results=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "non-finite" in proc.stderr + proc.stdout
    assert sorted(load_metadata(tmp_path).status) == ["completed", "diverged"]


@pytest.mark.slow
def test_preset_sweeps_its_own_widths(tmp_path):
    cli("-m", "experiment=mlp_sweep", "replicates=2", "epochs=2", "null_samples=5", results=tmp_path, check=True)
    df = load_runs(tmp_path)
    assert sorted(df.width.unique()) == [4, 8, 16, 32, 64, 128, 256]
    assert set(df.experiment) == {"mlp_sweep"} and set(df[df.kind == "trained"].seed) == {10000, 10001}


@pytest.mark.slow
def test_clean_protocol_and_tanh_from_the_command_line(tmp_path):
    cli("-m", "width=2,3", "model.protocol=clean", "model.activation=tanh", "epochs=2", "null_samples=5",
        results=tmp_path, check=True)
    df = load_runs(tmp_path)
    assert len(parquet_files(tmp_path)) == 2
    assert set(df.protocol) == {"clean"} and set(df.activation) == {"tanh"}


@pytest.mark.slow
def test_a_preset_with_bad_data_fails_once_before_any_job(tmp_path):
    """A preset sweeps its own widths: a bad value given once is reported once, before any job runs, and nothing
    is written (not even Hydra's sweep folder)."""
    proc = cli("experiment=mnist1d_mlp_sweep", "data=digits", results=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: data: model 'mlp_classifier' takes signal inputs, data 'digits' gives image inputs"]
    assert not list(tmp_path.iterdir())
