"""Figures 2–7, the summary table and notebook 02, built from a tiny real multi-seed sweep.

The sweep is made with the compose API (no subprocess): two experiments (linear and ReLU), a few
widths, 5 seeds, 3 epochs and a 50-sample null, which is enough to exercise every code path in seconds.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch

from analysis import figures as F
from analysis import plotting
from analysis.load import load_runs, load_weights
from analysis.stats import summary
from experiments.config import REPO_ROOT
from experiments.experiment import run
from tests.conftest import execute_notebook, make_cfg, notebook_outputs

SWEEP = {"mlp_sweep": (4, 8, 16), "mlp_relu": (4, 8)}
REPLICATES = 5
NOTEBOOK = REPO_ROOT / "notebooks" / "02_redundancy_vs_width.ipynb"
SWEEP_FIGURES = [name for name in F.MLP_FIGURES if name != "fig1_source_table"]  # the conv ones: test_figures_conv.py


def tiny(*overrides: str) -> list[str]:
    return [*overrides, "epochs=3", "null_samples=50", "progress=false"]


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both presets at a few widths (the presets' own width sweep is a Hydra multirun; compose ignores
    it, so each width is passed explicitly), plus one single-seed source run that must be left out."""
    root = tmp_path_factory.mktemp("sweep")
    for experiment, widths in SWEEP.items():
        for width in widths:
            run(make_cfg(*tiny(f"experiment={experiment}", f"width={width}", f"replicates={REPLICATES}")), root)
    run(make_cfg(*tiny("width=8")), root)
    return root


@pytest.fixture(scope="module")
def source_only_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seed per width, as the source ran it: figures 2–7 have nothing to show a CI for."""
    root = tmp_path_factory.mktemp("source_only")
    for width in (8, 32):
        run(make_cfg(*tiny(f"width={width}")), root)
    return root


def test_sweep_experiments_needs_a_null_and_several_seeds(sweep_root, source_only_root):
    df = load_runs(sweep_root)
    assert F.sweep_experiments(df) == ["mlp_sweep", "mlp_relu"]  # linear first; 'source' has one seed
    assert F.sweep_experiments(load_runs(source_only_root)) == []
    assert F.sweep_experiments(load_runs(source_only_root), min_seeds=1) == ["source"]
    assert F.sweep_experiments(df.iloc[:0]) == []


def test_load_weights_finds_the_runs_tensors(sweep_root):
    df = load_runs(sweep_root)
    assert Path(df.attrs["results_root"]) == sweep_root
    run_id = df.loc[(df["experiment"] == "mlp_sweep") & (df["width"] == 16), "run_id"].iloc[0]
    weights = load_weights(sweep_root / "runs", "mlp_sweep", run_id)  # the runs folder works as the root too
    assert weights["final/bottleneck.weight"].shape == (REPLICATES, 16, 32)
    assert weights["seeds"].tolist() == list(range(10000, 10000 + REPLICATES))
    assert not torch.equal(weights["initial/bottleneck.weight"], weights["final/bottleneck.weight"])
    with pytest.raises(FileNotFoundError, match="nope"):
        load_weights(sweep_root, "mlp_sweep", "nope")


@pytest.mark.slow
def test_build_all_writes_figures_2_to_7_and_the_summary(sweep_root, tmp_path):
    out = tmp_path / "figures"
    written = F.build_all(sweep_root, out)
    for name in SWEEP_FIGURES:
        for suffix in ("pdf", "png"):
            path = out / f"{name}.{suffix}"
            assert path in written and path.stat().st_size > 5000, path
        assert b"/FontFile2" in (out / f"{name}.pdf").read_bytes()  # TrueType embedded (fonttype 42)
    tables = sweep_root / "tables"
    assert tables / "summary.csv" in written and tables / "summary.md" in written
    table = pd.read_csv(tables / "summary.csv")
    key = (table["layer"] == "bottleneck") & (table["metric"] == "min_pair_l1")
    assert sorted(table.loc[key & (table["experiment"] == "mlp_sweep"), "width"]) == [4, 8, 16]
    assert (table.loc[key & (table["experiment"] != "source"), "n_seeds"] == REPLICATES).all()
    assert (table.loc[key, "n_null"] == 50).all()
    assert "min_pair_i" not in set(table["metric"])
    markdown = (tables / "summary.md").read_text()
    assert "| mlp_sweep | mlp | none | source | integers | none | 32 | 4 | bottleneck | min_pair_l1 | 5 |" in markdown


def test_figure_cis_come_from_the_summary(sweep_root, tmp_path, monkeypatch):
    """Figures 2–4 take their statistics from analysis.stats.summary, the one statistics code path."""
    calls = []

    def spy(df: pd.DataFrame) -> pd.DataFrame:
        calls.append(set(df["metric"]))
        return summary(df)

    monkeypatch.setattr(plotting, "summary", spy)
    df = load_runs(sweep_root)
    for make in (F.fig2_min_pair_vs_width, F.fig3_pair_free_vs_width, F.fig4_loss_vs_width):
        make(df, tmp_path)
    assert calls == [{"min_pair_l1"}, {"mean_nn_l1", "mean_nn_abs_cos", "eff_rank_norm", "stable_rank", "eff_rank"},
                     {"loss"}]


def test_sweep_figures_refuse_single_seed_results(source_only_root, tmp_path):
    df = load_runs(source_only_root)
    for name in [name for name in F.FIGURES if name != "fig1_source_table"]:
        with pytest.raises(F.NoData):
            F.FIGURES[name](df, tmp_path)
    assert not list(tmp_path.iterdir())
    # Asked for explicitly, they show the single seed against the null (no CI) instead of failing.
    assert F.fig2_min_pair_vs_width(df, tmp_path, experiments=["source"])


def test_heatmaps_need_the_saved_weights(sweep_root, tmp_path):
    df = load_runs(sweep_root)
    df.attrs.pop("results_root")
    with pytest.raises(F.NoData, match="results root"):
        F.fig6_cos_heatmaps(df, tmp_path)
    df.attrs["results_root"] = str(tmp_path)  # a root without weights/
    with pytest.raises(F.NoData, match="weights"):
        F.fig7_spectra(df, tmp_path)


def execute(root: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    return execute_notebook(NOTEBOOK, root, monkeypatch)


outputs = notebook_outputs


def text_of(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in outputs(nb))


@pytest.mark.slow
def test_notebook_02_on_a_sweep(sweep_root, monkeypatch):
    nb = execute(sweep_root, monkeypatch)
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    images = [o for o in outputs(nb) if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) == len(SWEEP_FIGURES)
    text = text_of(nb)
    assert "No multi-seed sweep" not in text and "skipped" not in text
    assert "| mlp_sweep | none | 8 | min_pair_l1 | 5 |" in text  # the summary view: bottleneck, widths 8/32/128
    assert "| mlp_sweep | none | 4 |" not in text
    for name in SWEEP_FIGURES:
        assert (sweep_root / "figures" / f"{name}.png").exists()


@pytest.mark.slow
def test_notebook_02_previews_single_seed_results(source_only_root, monkeypatch):
    """What tests/test_analysis.py::test_notebook_executes meets with its source-only fixture."""
    nb = execute(source_only_root, monkeypatch)
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    assert "No multi-seed sweep" in text_of(nb)
    assert any(o.output_type == "display_data" and "image/png" in o.get("data", {}) for o in outputs(nb))
    assert (source_only_root / "figures" / "preview" / "fig2_min_pair_vs_width.png").exists()
    assert not (source_only_root / "figures" / "fig2_min_pair_vs_width.png").exists()
