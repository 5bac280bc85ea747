"""Shared fixtures: composed configs, the real CLI in a subprocess, and one shared tiny source sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.config import CONF_DIR, REPO_ROOT

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs the suite in two worker processes (pytest-xdist): each gets one torch thread, so that the
    # two together use the machine's two cores instead of fighting over them.
    import torch

    torch.set_num_threads(1)


def make_cfg(*overrides: str) -> DictConfig:
    """Compose ``conf/config.yaml`` with overrides, exactly as ``run.py`` would."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def cli(*args: str, results: Path, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python run.py ARGS`` with results and Hydra's own logs under ``results``."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    extra = [f"results_dir={results}", f"hydra.run.dir={results}/hydra", f"hydra.sweep.dir={results}/hydra_multi"]
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "run.py"), *args, *extra], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def job_output(proc: subprocess.CompletedProcess, results: Path) -> str:
    """Everything a sweep's jobs printed: the command's own output, plus the per-job logs submitit writes
    under the sweep folder (its jobs run in other processes, whose output never reaches the terminal)."""
    logs = sorted((results / "hydra_multi" / ".submitit").rglob("*_log.*"))
    return "\n".join([proc.stdout, proc.stderr, *(p.read_text() for p in logs)])


def parquet_files(root: Path) -> list[Path]:
    return sorted((root / "runs").rglob("*.parquet")) if (root / "runs").exists() else []


@pytest.fixture(scope="session")
def source_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three source runs (widths 8, 32, 128; seed 10000; 100 epochs) through the real CLI, once."""
    root = tmp_path_factory.mktemp("source")
    cli("-m", "width=8,32,128", "null_samples=50", results=root, check=True)
    return root


def execute_notebook(notebook: Path, root: Path, monkeypatch: pytest.MonkeyPatch):
    """Run a notebook top to bottom on the results under ``root`` (kernel python3, Agg backend, repository root
    as its working folder), as a user would; returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("BOTTLENECK_RESULTS", str(root))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    return nb


def notebook_outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def notebook_text(nb) -> str:
    """Everything a notebook printed or displayed as text or markdown, one string."""
    return "\n".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in notebook_outputs(nb))


def capture(monkeypatch: pytest.MonkeyPatch, module) -> dict:
    """Stand in for ``module.save``: keep each figure (its axes, before it is closed), then save it."""
    figs: dict = {}
    real = module.save

    def keep(fig, out_dir: Path, name: str) -> list[Path]:
        figs[name] = fig
        return real(fig, out_dir, name)

    monkeypatch.setattr(module, "save", keep)
    return figs
