"""Launchers and sweep robustness: joblib and submitit give the basic launcher's numbers, a failed job
fails the sweep, SLURM settings compose, and a sweep killed mid-way resumes to the uninterrupted result.

The sweeps run the real CLI in subprocesses (marked slow); the thread-share and SLURM checks are quick.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from analysis.load import load_runs
from experiments.config import CONF_DIR, REPO_ROOT, available_cores, default_threads
from experiments.results import is_complete
from tests.conftest import cli, job_output, parquet_files

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
TINY = ("width=2,3", "epochs=2", "null_samples=5")
# Six jobs of about 0.5-2 s each on 2 cores: long enough to kill the sweep between two of them.
RESUMABLE = ("-m", "width=2,3,4,5,6,7", "epochs=300", "replicates=20", "null_samples=200", "log_every=50")


def sorted_runs(root: Path) -> pd.DataFrame:
    """All rows under ``root`` in a canonical order, so frames from different launchers compare exactly."""
    frame = load_runs(root)
    keys = ["run_id", "kind", "seed", "epoch", "layer", "metric"]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def temporaries(root: Path) -> list[Path]:
    """Hidden temporary files the atomic writer leaves when it is killed mid-write."""
    return sorted(p for p in root.rglob(".*") if p.is_file() and p.suffix == ".tmp")


def launcher_node(name: str, *overrides: str) -> DictConfig:
    """``hydra.launcher`` as Hydra composes it for ``hydra/launcher=<name>`` plus overrides."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={name}", *overrides],
                      return_hydra_config=True)
    return cfg.hydra.launcher


# ---------------------------------------------------------------------------------------------------
# Thread shares (quick)


@pytest.mark.parametrize(("launcher", "expected"), [
    (None, lambda c: c),
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, lambda c: c),
    ({"_target_": JOBLIB, "n_jobs": -1}, lambda c: 1),
    ({"_target_": JOBLIB, "n_jobs": 1}, lambda c: c),
    ({"_target_": JOBLIB, "n_jobs": 2}, lambda c: max(c // 2, 1)),
    ({"_target_": JOBLIB, "n_jobs": 64}, lambda c: 1),
    ({"_target_": SUBMITIT_LOCAL, "cpus_per_task": None}, lambda c: c),
    ({"_target_": SUBMITIT_LOCAL, "cpus_per_task": 1}, lambda c: 1),
])
def test_default_threads_share_the_granted_cores(launcher, expected):
    """A job's threads times the jobs running beside it never exceeds the cores this process may use."""
    node = OmegaConf.create(launcher) if launcher is not None else None
    assert default_threads(node) == expected(available_cores())


def test_joblib_launcher_defaults_give_one_thread_per_worker():
    """The plugin's own defaults (n_jobs=-1: one worker per core) compose to one thread per job."""
    assert default_threads(launcher_node("joblib")) == 1


def test_slurm_launcher_composes_with_cluster_keys():
    """``hydra/launcher=slurm`` starts from the plugin's submitit_slurm and takes command-line overrides."""
    node = launcher_node("slurm", "hydra.launcher.partition=cpu", "hydra.launcher.timeout_min=30")
    assert node._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (node.partition, node.timeout_min, node.cpus_per_task, node.mem_gb) == ("cpu", 30, 2, 4)
    assert node.array_parallelism == 64 and node.gpus_per_node is None
    assert default_threads(node) == min(2, available_cores())
    # The bare plugin config composes too.
    assert launcher_node("submitit_slurm")._target_.endswith("SlurmLauncher")


def test_slurm_settings_render_into_sbatch_lines(tmp_path, monkeypatch):
    """submitit accepts every key of slurm.yaml and turns them into the expected ``#SBATCH`` lines.

    submitit refuses to build a SLURM executor without ``srun`` on PATH; a stub stands in for it.
    Nothing is submitted: only the batch script's text is rendered.
    """
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    stub = tmp_path / "bin" / "srun"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")

    node = launcher_node("slurm", "hydra.launcher.partition=cpu")
    params = OmegaConf.to_container(node, resolve=False)
    assert isinstance(params, dict)
    params = {k: v for k, v in params.items() if k not in ("_target_", "submitit_folder")}
    params["name"] = "run"  # ${hydra.job.name} only resolves inside a running job
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "submitit",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    # The same mapping the launcher applies: generic keys as they are, SLURM-only keys prefixed.
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m job", "uid")
    for line in ("--partition=cpu", "--time=60", "--cpus-per-task=2", "--mem=4GB"):
        assert f"#SBATCH {line}" in script, script
    assert "--gpus-per-node" not in script


# ---------------------------------------------------------------------------------------------------
# Sweeps through the real CLI (slow)


@pytest.fixture(scope="module")
def basic_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the tiny sweep through Hydra's basic (sequential, in-process) launcher, one torch thread.

    One thread, as every job of the parallel launchers below gets: the same operations on the same inputs,
    so their results must be equal bit for bit (a different thread count may split a reduction differently).
    """
    root = tmp_path_factory.mktemp("basic")
    proc = cli("-m", *TINY, "threads=1", results=root, check=True)
    assert "1 torch thread(s)" in proc.stdout + proc.stderr
    return root


@pytest.mark.slow
def test_basic_launcher_gives_a_job_every_granted_core(tmp_path):
    proc = cli("-m", "width=2", "epochs=1", "null_samples=0", results=tmp_path, check=True)
    assert f"{available_cores()} torch thread(s), launcher BasicLauncher" in proc.stdout + proc.stderr


# Per launcher: the overrides that give each job one torch thread. joblib's default (n_jobs=-1, one worker per
# core) already does; submitit_local does not enforce cpus_per_task, but the job's thread count follows it.
ONE_THREAD = {"joblib": (), "submitit_local": ("hydra.launcher.cpus_per_task=1",)}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers_match_the_basic_launcher(launcher, basic_tiny, tmp_path):
    """Each launcher writes one file per job, with the basic launcher's rows, value for value."""
    proc = cli("-m", f"hydra/launcher={launcher}", *TINY, *ONE_THREAD[launcher], results=tmp_path, check=True)
    assert job_output(proc, tmp_path).count("1 torch thread(s)") == 2
    assert len(parquet_files(tmp_path)) == 2
    pd.testing.assert_frame_equal(sorted_runs(tmp_path), sorted_runs(basic_tiny), check_exact=True)
    if launcher == "joblib":
        # Logged from inside each loky worker after torch.set_num_threads: the share really applies there.
        expected = default_threads(launcher_node("joblib"))
        assert (proc.stdout + proc.stderr).count(f"{expected} torch thread(s), launcher JoblibLauncher") == 2


@pytest.mark.slow
def test_a_failed_job_fails_the_joblib_sweep_but_not_its_neighbours(tmp_path):
    """An invalid width in one job: the sweep exits non-zero, naming it, and the valid job still finishes."""
    proc = cli("-m", "hydra/launcher=joblib", "width=0,2", "epochs=2", "null_samples=5", results=tmp_path)
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "error: width: must be a positive integer, got 0" in proc.stderr
    assert "Error executing job with overrides: ['width=0'" in proc.stderr
    assert sorted(load_runs(tmp_path).width.unique()) == [2]


def start_sweep(results: Path, *args: str) -> subprocess.Popen:
    """``python run.py ARGS`` in its own process group (so a kill reaches every worker), output to a file."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    extra = [f"results_dir={results}", f"hydra.sweep.dir={results}/hydra_multi"]
    log = (results / "killed_sweep.log").open("w")
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "run.py"), *args, *extra], cwd=REPO_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL a sweep between jobs, rerun the same command: only the missing runs are redone.

    The resumed results must equal, exactly, those of a sweep that was never interrupted (runs are
    deterministic). A stale temporary file like the one a kill mid-write leaves is planted for a
    missing run: readers must ignore it and the rerun must clear it.
    """
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    reference.mkdir()
    resumed.mkdir()
    cli(*RESUMABLE, results=reference, check=True)
    expected_names = [p.name for p in parquet_files(reference)]
    assert len(expected_names) == 6

    proc = start_sweep(resumed, *RESUMABLE)
    deadline = time.monotonic() + 120
    try:
        while not parquet_files(resumed) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    survivors = parquet_files(resumed)
    assert 1 <= len(survivors) < 6, f"kill came too late or too early: {len(survivors)} files"
    # Everything visible as .parquet is complete and readable; nothing half-written passes as a result.
    assert all(is_complete(p) for p in survivors)
    assert len(load_runs(resumed).run_id.unique()) == len(survivors)

    missing = sorted(set(expected_names) - {p.name for p in survivors})
    stale = survivors[0].parent / f".{missing[0]}.killed.tmp"
    stale.write_bytes(survivors[0].read_bytes()[:100])  # a truncated parquet, as a kill mid-write leaves
    assert len(load_runs(resumed).run_id.unique()) == len(survivors)

    mtimes = {p: p.stat().st_mtime_ns for p in survivors}
    time.sleep(0.05)  # so that a rewrite could not land on the same mtime
    rerun = cli(*RESUMABLE, results=resumed, check=True)
    output = rerun.stdout + rerun.stderr
    for path, mtime in mtimes.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was rewritten"
        assert f"skip: {path} exists" in output
    assert output.count("skip: ") == len(survivors)
    assert output.count("wrote ") == len(missing)

    assert [p.name for p in parquet_files(resumed)] == expected_names
    assert temporaries(resumed / "runs") == []
    pd.testing.assert_frame_equal(sorted_runs(resumed), sorted_runs(reference), check_exact=True)
