"""Figures 2–7, the summary table and notebook 02, built from a tiny real multi-seed sweep.

The sweep is made with the compose API (no subprocess): two experiments (linear and ReLU), a few
widths, 5 seeds, 3 epochs and a 50-sample null, which is enough to exercise every code path in seconds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from analysis import figures as F
from analysis import figures_mlp, plotting
from analysis.load import load_runs, load_weights
from analysis.stats import summary
from experiments.config import REPO_ROOT
from experiments.experiment import run
from tests.conftest import capture, execute_notebook, make_cfg, notebook_outputs

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




def width_axes(fig: plt.Figure) -> list[plt.Axes]:
    """The panels of a figure that have a width axis (log x), in the order they were made (row by row)."""
    return [ax for ax in fig.axes if ax.axison and ax.get_xscale() == "log"]


def ticks(ax: plt.Axes) -> tuple[int, ...]:
    return tuple(int(t) for t in ax.get_xticks())


def assert_width_ticks(ax: plt.Axes, widths: tuple[int, ...]) -> None:
    """A log2 axis, a labelled tick at every swept width and none elsewhere (no minor ticks)."""
    assert ax.xaxis.get_transform().base == 2
    assert ticks(ax) == widths
    assert len(ax.get_xticks(minor=True)) == 0
    if ax.xaxis.get_tick_params()["labelbottom"]:
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(w) for w in widths]


def test_width_axes_tick_every_swept_width(sweep_root, tmp_path, monkeypatch):
    """Each panel: a tick at each width its experiment swept (mlp_sweep 4/8/16, mlp_relu 4/8), labelled, and
    at no other; panels of one figure share the x range. Shared x-axes (one tick locator) would give every
    panel the last panel's widths."""
    figs = capture(monkeypatch, figures_mlp)
    df = load_runs(sweep_root)
    lin, relu = SWEEP["mlp_sweep"], SWEEP["mlp_relu"]
    expected = {  # panels row by row: figure 2 has one column per experiment, figures 3, 3b, 3c one row each
        "fig2_min_pair_vs_width": [lin, relu, lin, relu],
        "fig3_pair_free_vs_width": [lin] * 4 + [relu] * 4,
        "fig3b_activation_vs_width": [lin] * 5 + [relu] * 5,  # with a ReLU experiment: the dead units column
        "fig3c_functional_vs_width": [lin] * 4 + [relu] * 4,
        "fig4_loss_vs_width": [lin],  # one panel, both experiments: every width shown
    }
    for name, widths in expected.items():
        F.FIGURES[name](df, tmp_path)
        axes = width_axes(figs[name])
        assert [ticks(ax) for ax in axes] == widths, name
        for ax, w in zip(axes, widths, strict=True):
            assert_width_ticks(ax, w)
        assert len({ax.get_xlim() for ax in axes}) == 1, name
        # Labels under a panel unless the one below it has the same widths: figure 2's columns label their bottom
        # panel; in figures 3, 3b, 3c the ReLU row below the linear one has other widths, so both rows are labelled.
        labelled = [ax.xaxis.get_tick_params()["labelbottom"] for ax in axes]
        assert labelled == ([False, False, True, True] if name == "fig2_min_pair_vs_width" else [True] * len(axes))


def test_one_width_grid_labels_only_the_bottom_row():
    fig, axes = plt.subplots(2, 2)
    plotting._width_grid(axes, [[(4, 8, 16, 32, 64, 128)] * 2] * 2, label=True)
    for ax in axes.ravel():
        assert_width_ticks(ax, (4, 8, 16, 32, 64, 128))
    assert [ax.xaxis.get_tick_params()["labelbottom"] for ax in axes.ravel()] == [False, False, True, True]
    assert [ax.get_xlabel() for ax in axes[1]] == ["bottleneck width $w$ (units)"] * 2
    assert {t.get_rotation() for t in axes[1, 0].get_xticklabels()} == {90.0}  # six widths in a narrow panel
    plt.close(fig)


def test_trajectories_tell_every_width_apart(sweep_root, tmp_path, monkeypatch):
    """Figure 5: each width its own qualitative colour-blind-safe colour and marker; the legend ordered by width."""
    figs = capture(monkeypatch, figures_mlp)
    F.fig5_trajectories(load_runs(sweep_root), tmp_path)
    fig = figs["fig5_trajectories"]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [str(w) for w in SWEEP["mlp_sweep"]]
    styles = [(tuple(h.get_color()), h.get_marker()) for h in legend.legend_handles]
    assert len({c for c, _ in styles}) == len({m for _, m in styles}) == len(styles)
    assert {c for c, _ in styles} <= {tuple(c) for c in plotting.PALETTE}
    for ax in fig.axes:
        lines = {ln.get_label(): (tuple(ln.get_color()), ln.get_marker()) for ln in ax.get_lines()
                 if not ln.get_label().startswith("_")}
        assert lines == dict(zip([str(w) for w in SWEEP["mlp_sweep"]][:len(lines)], styles[:len(lines)], strict=True))


def heatmap_cells(fig: plt.Figure) -> list[tuple[str, int, float]]:
    """(column title, cells a side, device pixels a cell at savefig.dpi) of every heatmap of figure 6."""
    dpi = plotting.STYLE["savefig.dpi"]
    out = []
    for ax in fig.axes:
        for image in ax.get_images():
            n = image.get_array().shape[0]
            assert image.get_array().shape == (n, n)
            px = ax.get_window_extent().width * dpi / fig.dpi / n
            out.append((ax.get_title(), n, px))
    return out


def test_heatmaps_keep_cells_readable(sweep_root, tmp_path, monkeypatch):
    """Figure 6: every cell shown takes ≥ 2 device pixels; a layer wider than 64 units shows its first 64, saying so."""
    figs = capture(monkeypatch, figures_mlp)
    df = load_runs(sweep_root)
    F.fig6_cos_heatmaps(df, tmp_path)
    cells = heatmap_cells(figs["fig6_cos_heatmaps"])
    assert sorted({n for _, n, _ in cells}) == list(SWEEP["mlp_sweep"]) and min(px for *_, px in cells) >= 2
    # Wide layers (as the real sweep's 128 and 256): random weights in place of the saved ones.
    gen = torch.Generator().manual_seed(0)
    fake = {("mlp_sweep", w): {"initial": torch.randn(2, w, 32, generator=gen),
                               "final": torch.randn(2, w, 32, generator=gen), "seeds": torch.tensor([10001, 10000])}
            for w in (4, 16, 32, 64, 128, 256)}
    monkeypatch.setattr(figures_mlp, "_bottleneck_weights", lambda df, exps: fake)
    F.fig6_cos_heatmaps(df, tmp_path, experiments=["mlp_sweep"])
    fig = figs["fig6_cos_heatmaps"]
    cells = heatmap_cells(fig)
    assert len(cells) == 2 * len(fake)
    assert min(px for *_, px in cells) >= 2
    shown = {int(title.split("= ")[1].split("\n")[0]): (title, n) for title, n, _ in cells if title}
    assert {w: n for w, (_, n) in shown.items()} == {4: 4, 16: 16, 32: 32, 64: 64, 128: 64, 256: 64}
    assert [w for w, (title, _) in shown.items() if "units 1–64" in title] == [128, 256]
    assert "the first 64 units only" in fig.get_suptitle()
    # The block is the first 64 units of the lowest seed, and the panel names the layer's largest |cos| over all pairs.
    final_256 = [ax for ax in fig.axes if ax.get_images()][len(fake) + 5]
    unit = fake[("mlp_sweep", 256)]["final"][1].double()
    unit = unit / unit.norm(dim=1, keepdim=True)
    cos = (unit @ unit.T).abs().numpy()
    np.testing.assert_allclose(final_256.get_images()[0].get_array(), cos[:64, :64])
    assert final_256.get_xlabel() == f"max {cos[~np.eye(256, dtype=bool)].max():.2f}"


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
