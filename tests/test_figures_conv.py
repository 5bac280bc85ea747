"""Figures 3b, 8 and 9 and notebook 03, built from a tiny real conv sweep next to a tiny MLP sweep.

Made with the compose API (no subprocess): ``conv_sweep`` at widths 4 and 8, ``conv_relu_sweep`` at width 4
and ``mlp_sweep`` at widths 4 and 8, 3 seeds, 2 epochs, a 10-sample null and a few images, which exercises
every code path of the conv figures and checks that the MLP figures keep to the MLP family.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest

from analysis import figures as F
from analysis import figures_conv, plotting
from analysis.load import load_runs
from analysis.stats import select, summary
from experiments.config import REPO_ROOT
from experiments.experiment import run
from experiments.metrics import ACTIVATION_METRICS
from tests.conftest import capture, execute_notebook, make_cfg, notebook_outputs

REPLICATES = 3
CONV = {"conv_sweep": (4, 8), "conv_relu_sweep": (4,)}
MLP = {"mlp_sweep": (4, 8)}
NOTEBOOK = REPO_ROOT / "notebooks" / "03_conv_bottlenecks.ipynb"
MLP_SWEEP_FIGURES = [name for name in F.MLP_FIGURES if name != "fig1_source_table"]


def tiny(experiment: str, width: int) -> list[str]:
    return [f"experiment={experiment}", f"width={width}", f"replicates={REPLICATES}", "epochs=2", "null_samples=10",
            "progress=false", *(["data.n_train=32", "data.n_eval=16"] if experiment.startswith("conv") else [])]


def sweep(root: Path, experiments: dict[str, tuple[int, ...]]) -> Path:
    for experiment, widths in experiments.items():
        for width in widths:
            run(make_cfg(*tiny(experiment, width)), root)
    return root


@pytest.fixture(scope="module")
def mlp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sweep(tmp_path_factory.mktemp("mlp_only"), MLP)


@pytest.fixture(scope="module")
def both_root(tmp_path_factory: pytest.TempPathFactory, mlp_root: Path) -> Path:
    """The conv sweeps plus a copy of the MLP sweep's runs and weights (copied, not rerun)."""
    root = sweep(tmp_path_factory.mktemp("conv_and_mlp"), CONV)
    for sub in ("runs", "weights"):
        shutil.copytree(mlp_root / sub, root / sub, dirs_exist_ok=True)
    return root


def test_sweep_experiments_by_family(both_root):
    df = load_runs(both_root)
    assert F.sweep_experiments(df) == ["mlp_sweep"]  # the default family: figures 2–7
    assert F.sweep_experiments(df, model="mlp") == ["mlp_sweep"]
    assert F.sweep_experiments(df, model="conv") == ["conv_sweep", "conv_relu_sweep"]  # linear first
    assert F.sweep_experiments(df, model=None) == ["conv_sweep", "mlp_sweep", "conv_relu_sweep"]
    assert F.sweep_experiments(df, model="resnet") == []


def test_each_figure_keeps_to_its_family(both_root, tmp_path, monkeypatch):
    """Figures 2–4 and 3b summarise only MLP rows, figures 8 and 8b only conv rows, all through stats.summary."""
    seen: dict[str, set] = {}
    current = ""

    def spy(rows: pd.DataFrame) -> pd.DataFrame:
        seen.setdefault(current, set()).update(rows["model"].unique())
        return summary(rows)

    monkeypatch.setattr(plotting, "summary", spy)
    df = load_runs(both_root)
    expected = {name: {"mlp"} for name in ("fig2_min_pair_vs_width", "fig3_pair_free_vs_width",
                                           "fig3b_activation_vs_width", "fig4_loss_vs_width")}
    expected |= {name: {"conv"} for name in F.CONV_FIGURES}
    for name in expected:
        current = name
        F.FIGURES[name](df, tmp_path)
    assert seen == expected
    # Asked for a conv experiment by name, an MLP figure has nothing to show, and the other way round.
    with pytest.raises(F.NoData, match="no mlp experiment"):
        F.fig2_min_pair_vs_width(df, tmp_path, experiments=["conv_sweep"])
    with pytest.raises(F.NoData, match="no conv experiment"):
        F.fig8_conv_redundancy_vs_width(df, tmp_path, experiments=["mlp_sweep"])


def test_conv_figures_refuse_mlp_only_results(mlp_root, tmp_path):
    df = load_runs(mlp_root)
    for name in F.CONV_FIGURES:
        with pytest.raises(F.NoData, match="experiment=conv_sweep"):
            F.FIGURES[name](df, tmp_path)
    assert not list(tmp_path.iterdir())
    assert F.fig3b_activation_vs_width(df, tmp_path)  # the MLP's activation figure needs no conv run


def test_summary_has_conv_activation_rows(both_root):
    df = load_runs(both_root)
    table = summary(df[df["model"] == "conv"])
    view = select(table, layer="bottleneck", metrics=list(ACTIVATION_METRICS))
    assert set(view["experiment"]) == set(CONV)
    assert set(view["metric"]) == set(ACTIVATION_METRICS)
    assert (view["n_seeds"] <= REPLICATES).all() and (view["n_null"] == 10).all()
    dead = view[(view["metric"] == "act_dead_frac") & (view["experiment"] == "conv_sweep")]
    assert (dead[["init_mean", "end_mean", "null_mean"]] == 0).all().all()  # no dead channel without ReLU
    loss = select(table, layer="model", metrics=["loss", "eval_loss"])
    assert len(loss) == 2 * sum(len(w) for w in CONV.values())


def test_conv_width_axes_tick_every_swept_width(both_root, tmp_path, monkeypatch):
    """Figures 8 and 8b: a labelled tick at every width swept (conv_sweep 4/8, conv_relu_sweep 4) and none
    elsewhere, on a log2 axis. Figure 8's rows of one experiment carry its widths (shared x-axes would give
    every panel the last panel's), labelled under its last row; figure 8b's panels show both experiments."""
    figs = capture(monkeypatch, figures_conv)
    df = load_runs(both_root)
    for name in F.CONV_FIGURES:
        F.FIGURES[name](df, tmp_path)
    every = tuple(sorted({w for ws in CONV.values() for w in ws}))

    def shown(name: str) -> list[tuple[plt.Axes, tuple[int, ...], bool]]:
        axes = [ax for ax in figs[name].axes if ax.axison]
        assert {ax.get_xscale() for ax in axes} == {"log"} and {ax.xaxis.get_transform().base for ax in axes} == {2}
        assert not any(len(ax.get_xticks(minor=True)) for ax in axes)
        assert len({ax.get_xlim() for ax in axes}) == 1, name
        out = []
        for ax in axes:
            ticks = tuple(int(t) for t in ax.get_xticks())
            labelled = ax.xaxis.get_tick_params()["labelbottom"]
            if labelled:
                assert [t.get_text() for t in ax.get_xticklabels()] == [str(w) for w in ticks]
            out.append((ax, ticks, labelled))
        return out

    fig8 = shown("fig8_conv_redundancy_vs_width")
    n_cols = len(figures_conv.CONV_WEIGHT_COLUMNS)
    rows = [fig8[k:k + n_cols] for k in range(0, len(fig8), n_cols)]
    per_exp = len(rows) // len(CONV)
    for i, widths in enumerate(CONV.values()):  # experiments top to bottom: conv_sweep, conv_relu_sweep
        block = rows[i * per_exp:(i + 1) * per_exp]
        assert {ticks for row in block for _, ticks, _ in row} == {tuple(widths)}
        assert [{labelled for *_, labelled in row} for row in block] == [{False}] * (per_exp - 1) + [{True}]
    fig8b = shown("fig8b_conv_loss_vs_width")
    assert [(ticks, labelled) for _, ticks, labelled in fig8b] == [(every, True)] * 2


def test_error_bars_never_negative():
    """All seeds equal (a linear MLP's |corr| of 1): bootstrap means may miss the mean by an ulp either way."""
    one = np.array([1.0, 1.0])
    bars = plotting._err(one, np.nextafter(one, 2.0), np.nextafter(one, 0.0))
    assert (bars == 0).all()


@pytest.mark.slow
def test_build_all_writes_the_activation_and_conv_figures(both_root, tmp_path):
    out = tmp_path / "figures"
    written = F.build_all(both_root, out, tables_dir=tmp_path / "tables")
    for name in [*MLP_SWEEP_FIGURES, *F.CONV_FIGURES]:
        for suffix in ("pdf", "png"):
            path = out / f"{name}.{suffix}"
            assert path in written and path.stat().st_size > 5000, path
        assert b"/FontFile2" in (out / f"{name}.pdf").read_bytes()  # TrueType embedded (fonttype 42)
    table = pd.read_csv(tmp_path / "tables" / "summary.csv")
    conv = table[(table["model"] == "conv") & (table["layer"] == "bottleneck")]
    assert set(ACTIVATION_METRICS) <= set(conv["metric"])


def execute(root: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    return execute_notebook(NOTEBOOK, root, monkeypatch)


outputs = notebook_outputs


def images(nb: nbformat.NotebookNode) -> list:
    return [o for o in outputs(nb) if o.output_type == "display_data" and "image/png" in o.get("data", {})]


def text_of(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in outputs(nb))


@pytest.mark.slow
def test_notebook_03_on_a_conv_sweep(both_root, monkeypatch):
    nb = execute(both_root, monkeypatch)
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    assert len(images(nb)) == 1 + len(F.CONV_FIGURES)  # the task's images, figures 8 and 8b
    text = text_of(nb)
    assert "No conv sweep" not in text
    # Only the ResNet section (no ResNet runs here) says it skipped its figure.
    assert [line for line in text.splitlines() if "skipped" in line] == [
        line for line in text.splitlines() if line.startswith("fig10_resnet_blocks_vs_params skipped")]
    assert f"| conv_sweep | none | 8 | act_mean_nn_abs_corr | {REPLICATES} |" in text  # widths 8/32/128 only
    assert "| conv_relu_sweep | relu | 4 |" not in text
    assert f"| conv_sweep | none | 8 | eval_loss | {REPLICATES} |" in text
    assert "mlp_sweep" not in text.split("experiments:")[1].splitlines()[0]
    for name in F.CONV_FIGURES:
        assert (both_root / "figures" / f"{name}.png").exists()


@pytest.mark.slow
def test_notebook_03_without_conv_runs(mlp_root, monkeypatch):
    nb = execute(mlp_root, monkeypatch)
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    text = text_of(nb)
    assert "No conv sweep" in text and "There are no conv runs to show." in text
    assert len(images(nb)) == 1  # only the task's images
    assert not (mlp_root / "figures").exists()
