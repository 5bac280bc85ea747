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


def test_figures_on_empty_results_write_only_the_architecture_tables(tmp_path):
    """No runs: no figure and no summary; only the architecture cost tables, which are counted on modules."""
    written = build_all(tmp_path)
    assert sorted(p.name for p in written) == ["arch_costs.csv", "arch_costs.md", "arch_costs.tex", "claims.csv",
                                                "claims.md"]
    assert not (tmp_path / "figures").exists()


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
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    if path.name.startswith("04_"):  # compression: nothing to show for source runs, and it says so
        assert any("fig9_compression skipped" in o.get("text", "") for o in outputs)
    else:
        assert any(o.output_type == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
