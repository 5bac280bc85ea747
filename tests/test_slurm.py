"""The SLURM launcher against a real cluster: ``hydra/launcher=slurm`` submits, runs and collects a sweep.

Needs ``sbatch`` on PATH and a cluster that answers (``sinfo``); otherwise every test here is skipped.
CI and single machines start a one-node cluster with ``scripts/local_slurm.sh`` (as root). On a real
cluster, run from a shared filesystem: pytest's tmp_path must be visible to the compute nodes.

A cluster without accounting (like the local one) makes submitit warn ``Bypassing sacct error``
while it waits; that is expected and nothing here depends on it: submitit sees a job finish by its
result file, not by sacct.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from analysis.load import load_runs
from tests.conftest import cli, parquet_files
from tests.test_launchers import TINY, sorted_runs

pytestmark = pytest.mark.slow

# One core and 1 GB per job, so the two jobs of a sweep run side by side on a 2-core machine; each job
# then runs with 1 torch thread, the reference sweep below with threads=1.
SLURM = ("-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
         "hydra.launcher.timeout_min=5")
SWEEP_TIMEOUT = 180  # seconds for one sweep (about 8 s here): a job lost without trace hangs submitit


def slurm_problem() -> str | None:
    """Why no SLURM sweep can run here, or None when the cluster answers."""
    for tool in ("sbatch", "srun", "sinfo"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH: no SLURM client here (start a local cluster: sudo scripts/local_slurm.sh)"
    try:
        proc = subprocess.run(["sinfo", "--noheader", "--responding", "--format=%P %t"], capture_output=True,
                              text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s: no slurm.conf, or the controller is not reachable"
    if proc.returncode != 0:
        return f"sinfo failed ({proc.returncode}): {proc.stderr.strip()[-300:]} (is the cluster up?)"
    if not proc.stdout.strip():
        return "sinfo lists no responding node: jobs would never start"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    """Skip without a cluster, except where one is promised (``REQUIRE_SLURM=1``, set by ``.ci/run``): there a
    missing cluster is a failure, so CI can never pass with these tests silently skipped."""
    problem = slurm_problem()
    if problem and os.environ.get("REQUIRE_SLURM") == "1":
        pytest.fail(f"REQUIRE_SLURM=1 but {problem}")
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def basic_one_thread(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the tiny sweep through the basic launcher with 1 torch thread, as each SLURM job has."""
    root = tmp_path_factory.mktemp("basic")
    cli("-m", *TINY, "threads=1", results=root, check=True)
    return root


def submitit_jobs(sweep_dir: Path) -> dict[str, str]:
    """``{SLURM job id (<array id>_<task>): its stdout}`` from submitit's folder under the sweep dir."""
    logs = sorted((sweep_dir / ".submitit").glob("*_*/*_0_log.out"))
    return {log.parent.name: log.read_text() for log in logs}


def test_slurm_sweep_matches_the_basic_launcher(basic_one_thread, tmp_path):
    """Each job is a SLURM array task with 1 core; the results are the basic launcher's, value for value."""
    proc = cli(*SLURM, *TINY, results=tmp_path, check=True, timeout=SWEEP_TIMEOUT)
    assert len(parquet_files(tmp_path)) == 2
    assert [p.name for p in parquet_files(tmp_path)] == [p.name for p in parquet_files(basic_one_thread)]
    pd.testing.assert_frame_equal(sorted_runs(tmp_path), sorted_runs(basic_one_thread), check_exact=True)

    # They really went through sbatch: one array job, whose tasks ran with SLURM's job ids and 1 thread each.
    sweep_dir = tmp_path / "hydra_multi"
    assert "Submitit 'slurm' sweep output dir" in proc.stdout + proc.stderr
    jobs = submitit_jobs(sweep_dir)
    assert len(jobs) == 2, sorted((sweep_dir / ".submitit").rglob("*"))
    array_ids = {job.split("_")[0] for job in jobs}
    assert len(array_ids) == 1, jobs.keys()
    (array_id,) = array_ids
    assert re.fullmatch(r"\d+", array_id), array_id
    script = (sweep_dir / ".submitit" / array_id / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-1%" in script and "#SBATCH --cpus-per-task=1" in script, script
    for job, out in jobs.items():
        assert f"Starting with JobEnvironment(job_id={job}," in out, out
        assert "1 torch thread(s), launcher SlurmLauncher" in out, out
        assert "Job completed successfully" in out, out


def test_a_failed_job_fails_the_slurm_sweep_but_not_its_neighbour(tmp_path):
    """An invalid width in one array task: the sweep exits 1 naming it; the other task's results land."""
    proc = cli(*SLURM, "width=0,2", "epochs=2", "null_samples=5", results=tmp_path, timeout=SWEEP_TIMEOUT)
    assert proc.returncode == 1, proc.stderr[-2000:]
    # What the user sees: Hydra names the failed job and the job's exception (raised in the SLURM job,
    # carried back by submitit).
    assert "Error executing job with overrides: ['width=0'" in proc.stderr, proc.stderr[-2000:]
    assert "ConfigError: width: must be a positive integer, got 0" in proc.stderr, proc.stderr[-2000:]
    assert len(parquet_files(tmp_path)) == 1
    assert sorted(load_runs(tmp_path).width.unique()) == [2]
    # The failed job's own stderr (in submitit's folder) holds run.py's one-line error.
    errors = sorted((tmp_path / "hydra_multi" / ".submitit").glob("*_*/*_0_log.err"))
    assert any("error: width: must be a positive integer, got 0" in p.read_text() for p in errors), errors
