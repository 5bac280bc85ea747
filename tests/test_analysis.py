"""Figures, tables and notebooks built from a real (small) set of runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from analysis.figures import build_all
from experiments.config import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
def test_figures_cli_writes_fig1_and_prints_table(source_results, tmp_path):
    out = tmp_path / "figs"
    proc = subprocess.run([sys.executable, "-m", "analysis.figures", "--results", str(source_results),
                           "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={"MPLBACKEND": "Agg", "PATH": ""}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| 8 | 0.0354 | 0.0354 | 0.0894 | 0.0894 | (1, 4) | True |" in proc.stdout
    for suffix in ("pdf", "png", "md"):
        assert (out / f"fig1_source_table.{suffix}").stat().st_size > 0
    assert b"/FontFile2" in (out / "fig1_source_table.pdf").read_bytes()  # TrueType embedded (fonttype 42)


def test_figures_on_empty_results_write_nothing(tmp_path):
    assert build_all(tmp_path) == []


def test_figures_cli_names_a_corrupt_file(tmp_path):
    (tmp_path / "runs" / "source").mkdir(parents=True)
    (tmp_path / "runs" / "source" / "bad.parquet").write_text("junk")
    proc = subprocess.run([sys.executable, "-m", "analysis.figures", "--results", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "bad.parquet" in proc.stderr and not (tmp_path / "figures").exists()


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, source_results, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_RESULTS", str(source_results))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert any(o.output_type == "display_data" and "image/png" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
