"""Figures 11–13 and the MNIST-1D tables, built from one tiny real results root per module.

The root holds every MNIST-1D preset shrunk to seconds (2–3 seeds, 1–2 epochs, 200 training signals, a 5-sample
null), each family at its own pair of widths so that the width axes can be told apart, and a tiny 2-D ``resnet``
sweep beside the 1-D one, which checks that figures 10 and 13 (one generalised code path) keep to their family.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import figures as F
from analysis import figures_mnist1d as M
from analysis import figures_resnet as R
from analysis.load import load_runs
from experiments.experiment import run
from tests.conftest import make_cfg

pytestmark = pytest.mark.slow  # ~15 tiny training runs and three many-panel figures

SEEDS, BASELINE_SEEDS, BASELINE_EPOCHS, N_TRAIN, BATCH = 2, 3, 2, 200, 100
# Each family at its own widths, so a panel's ticks say which sweep it is.
WIDTHS = {"mnist1d_mlp_sweep": (2, 8), "mnist1d_cnn_sweep": (4, 16), "autoencoder_sweep": (1, 4)}
RESNET1D_WIDTHS, RESNET1D_C = (4, 8), 16


def tiny(cache: Path, *overrides: str, data: str = "mnist1d") -> list[str]:
    split = ([f"data.n_train={N_TRAIN}", "data.n_eval=100", f"data.cache_dir={cache}"] if data == "mnist1d" else
             ["data.n_train=100", "data.n_eval=50"])
    return [*overrides, f"replicates={SEEDS}", "epochs=1", "log_every=1", "null_samples=5", "progress=false", *split]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mnist1d")
    cache = root / "cache"
    for experiment in ("mnist1d_mlp_sweep", "mnist1d_cnn_sweep"):
        for w in WIDTHS[experiment]:
            run(make_cfg(*tiny(cache, f"experiment={experiment}", f"width={w}")), root)
    for data in ("mnist1d", "digits"):
        for w in WIDTHS["autoencoder_sweep"]:
            run(make_cfg(*tiny(cache, "experiment=autoencoder_sweep", f"data={data}", f"width={w}", data=data)), root)
    for block in ("basic", "bottleneck"):
        for w in RESNET1D_WIDTHS:
            run(make_cfg(*tiny(cache, "experiment=mnist1d_resnet_sweep", f"model.block={block}", f"width={w}",
                               f"model.channels={RESNET1D_C}")), root)
        for w in (4, 8):  # the 2-D family of figure 10, as in tests/test_resnet.py
            run(make_cfg("experiment=resnet_sweep", f"model.block={block}", f"width={w}", "model.channels=8",
                         f"replicates={SEEDS}", "epochs=1", "null_samples=4", "data.n_train=64", "data.n_eval=32",
                         "optim.batch_size=32", "progress=false"), root)
    for model in ("logistic", "mlp_reference", "cnn1d"):
        run(make_cfg("experiment=mnist1d_baselines", f"model={model}", f"replicates={BASELINE_SEEDS}",
                     f"epochs={BASELINE_EPOCHS}", "log_every=1", "null_samples=5", "progress=false",
                     f"data.n_train={N_TRAIN}", "data.n_eval=100", f"data.cache_dir={cache}",
                     f"optim.batch_size={BATCH}"), root)
    return root


@pytest.fixture(scope="module")
def df(root: Path) -> pd.DataFrame:
    return load_runs(root)


class Capture:
    """Stands in for ``save`` in figure modules: keeps what each saved figure shows, then saves it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *modules) -> None:
        self.real, self.figs = modules[0].save, {}
        for module in modules:
            monkeypatch.setattr(module, "save", self)

    def __call__(self, fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
        axes = [ax for ax in fig.get_figure(root=True).axes if ax.get_visible() and ax.axison]
        self.figs[name] = {
            "axes": [{"title": ax.get_title(), "ylabel": ax.get_ylabel(), "xscale": ax.get_xscale(),
                      "xticks": [float(t) for t in ax.get_xticks()], "lines": [ln for ln in ax.get_lines()],
                      "texts": [(t.get_text(), getattr(t, "xyann", None)) for t in ax.texts]} for ax in axes],
            "legend": [t.get_text() for leg in fig.legends for t in leg.get_texts()],
            "suptitles": [sf.get_suptitle() for sf in fig.subfigs],
        }
        return self.real(fig, out_dir, name)


@pytest.fixture(scope="module")
def built(root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path, Path, dict]:
    """``build_all`` once: every figure and table the root supports, and what figures 10–13 showed."""
    out = tmp_path_factory.mktemp("built")
    figures, tables = out / "figures", out / "tables"
    with pytest.MonkeyPatch.context() as monkeypatch:
        cap = Capture(monkeypatch, M, R)
        written = F.build_all(root, figures, tables_dir=tables)
    return written, figures, tables, cap.figs


def vertical_lines(lines) -> set[float]:
    return {float(ln.get_xdata()[0]) for ln in lines if len(set(np.atleast_1d(ln.get_xdata()))) == 1
            and ln.get_transform().contains_branch_seperately(ln.axes.transData)[0]
            and not ln.get_transform().contains_branch_seperately(ln.axes.transData)[1]}


def horizontal_lines(lines) -> set[float]:
    return {round(float(ln.get_ydata()[0]), 6) for ln in lines if len(set(np.atleast_1d(ln.get_ydata()))) == 1
            and not ln.get_transform().contains_branch_seperately(ln.axes.transData)[0]}


# ---------------------------------------------------------------------------------------------------------
# Registration and files


def test_build_all_writes_the_figures_and_tables(built):
    written, figures, tables, _ = built
    names = {p.name for p in written}
    for fig in F.MNIST1D_FIGURES:
        assert {f"{fig}.pdf", f"{fig}.png"} <= names
        assert (figures / f"{fig}.png").stat().st_size > 5000 and (figures / f"{fig}.pdf").stat().st_size > 5000
        assert b"/FontFile2" in (figures / f"{fig}.pdf").read_bytes()  # TrueType embedded (fonttype 42)
    assert {"mnist1d_baselines.csv", "mnist1d_baselines.md", "mnist1d_resnet_blocks.csv", "mnist1d_resnet_blocks.md",
            "mnist1d_resnet_matched.csv", "mnist1d_resnet_matched.md"} <= names
    # Figure 10 and its tables still come from the 2-D family, with the file names they always had.
    assert {"fig10_resnet_blocks_vs_params.png", "resnet_blocks.csv", "resnet_blocks.md", "resnet_matched.csv"} <= names
    assert "resnet_matched.md" not in names
    assert all((tables / n).parent == tables for n in names if n.endswith((".csv", ".md")))
    assert set(F.MNIST1D_FIGURES) <= set(F.FIGURES) and set(F.MNIST1D_FIGURES) <= set(F.__all__)


# ---------------------------------------------------------------------------------------------------------
# Figure 11


def test_fig11_sweeps_ticks_and_marked_widths(df, built):
    shown = built[3]["fig11_mnist1d_redundancy_vs_width"]
    assert M.mnist1d_sweeps(df) == [("mnist1d_mlp_sweep", "mlp_classifier", "mnist1d"),
                                    ("mnist1d_cnn_sweep", "cnn1d", "mnist1d"),
                                    ("autoencoder_sweep", "autoencoder", "mnist1d"),
                                    ("autoencoder_sweep", "autoencoder", "digits")]
    assert [s.split(":")[0] for s in shown["suptitles"]] == ["mnist1d_mlp_sweep", "mnist1d_cnn_sweep",
                                                             "autoencoder_sweep", "autoencoder_sweep"]
    assert "(D = 64)" in shown["suptitles"][3] and "64→100→w→100→64" in shown["suptitles"][3]
    # Every panel: a log2 axis whose ticks are exactly one sweep's widths; every sweep appears.
    ticks = {tuple(ax["xticks"]) for ax in shown["axes"]}
    assert ticks == {tuple(float(w) for w in ws) for ws in WIDTHS.values()}
    assert {ax["xscale"] for ax in shown["axes"]} == {"log"}
    # Marked widths: D = 40 and h = 100 on the MLP's panels, C = 25 on the CNN's, D = 64 on the digits autoencoder's.
    marks = [vertical_lines(ax["lines"]) for ax in shown["axes"]]
    by_ticks: dict[tuple, set] = {}
    for ax, m in zip(shown["axes"], marks, strict=True):
        by_ticks.setdefault(tuple(ax["xticks"]), set()).update(m)
    assert by_ticks[(2.0, 8.0)] == {40.0, 100.0}
    assert by_ticks[(4.0, 16.0)] == {25.0}
    assert by_ticks[(1.0, 4.0)] == {40.0, 64.0, 100.0}
    legend = " | ".join(shown["legend"])
    assert "$D$ = 40 (MNIST-1D), 64 (digits)" in legend and "$h$ = 100" in legend and "$C$ = 25" in legend
    # One row per metric group the results hold: weights, activations and the functional metrics.
    groups = [ax["ylabel"] for ax in shown["axes"] if ax["ylabel"]]
    assert groups == ["weights", "activations", "functional"] * 4
    titles = {ax["title"].split("\n")[0] for ax in shown["axes"]}
    assert {t.split("\n")[0] for _, t in M.WEIGHT_METRICS + M.ACTIVATION_METRICS + M.FUNCTIONAL_METRICS} == titles


def test_fig11_skips_absent_metrics_and_shows_added_ones(df, tmp_path, monkeypatch):
    """A metric the results lack gets no panel; a metric of a group that appears in the results gets its row."""
    cap = Capture(monkeypatch, M)
    closest = M.WEIGHT_METRICS[2][1].split("\n")[0]
    cnn = df[(df["model"] == "cnn1d") & ~df["metric"].isin([m for m, _ in M.FUNCTIONAL_METRICS])]  # one family
    dead = cnn[cnn["metric"] == "act_dead_frac"].assign(metric=M.FUNCTIONAL_METRICS[0][0])  # stands in for a new metric
    paths = M.fig11_mnist1d_redundancy_vs_width(pd.concat([cnn[cnn["metric"] != "min_pair_l1"], dead]), tmp_path)
    assert [p.name for p in paths] == ["fig11_mnist1d_redundancy_vs_width.pdf", "fig11_mnist1d_redundancy_vs_width.png"]
    shown = cap.figs["fig11_mnist1d_redundancy_vs_width"]
    titles = [ax["title"].split("\n")[0] for ax in shown["axes"]]
    assert closest not in titles and len(titles) == len(M.WEIGHT_METRICS) - 1 + len(M.ACTIVATION_METRICS) + 1
    assert [ax["ylabel"] for ax in shown["axes"] if ax["ylabel"]] == ["weights", "activations", "functional"]
    assert titles.count(M.FUNCTIONAL_METRICS[0][1].split("\n")[0]) == 1


# ---------------------------------------------------------------------------------------------------------
# Figure 12 and the baselines table


def test_baselines_table_holds_the_published_numbers_and_our_means(df, root, tmp_path):
    table = M.baselines_table(df).set_index("model")
    assert list(table.index) == ["logistic", "mlp_reference", "cnn1d"]
    assert table["published_pct"].to_dict() == {"logistic": 32.0, "mlp_reference": 68.0, "cnn1d": 94.0}
    assert table["published_pct"].to_dict() == M.PUBLISHED_BASELINES
    rows = df[(df["experiment"] == M.BASELINES_EXPERIMENT) & (df["kind"] == "trained") & (df["layer"] == "model")
              & (df["metric"] == "test_accuracy") & (df["epoch"] == BASELINE_EPOCHS)]
    for model, row in table.iterrows():
        values = 100 * rows.loc[rows["model"] == model, "value"].to_numpy()
        assert values.size == BASELINE_SEEDS == row["n_seeds"]
        assert row["test_accuracy_mean_pct"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["test_accuracy_lo_pct"] <= row["test_accuracy_mean_pct"] <= row["test_accuracy_hi_pct"]
        assert row["diff_pct"] == pytest.approx(row["test_accuracy_mean_pct"] - row["published_pct"])
        assert row["epochs"] == BASELINE_EPOCHS and row["steps"] == BASELINE_EPOCHS * -(-N_TRAIN // BATCH)
    assert table.loc["cnn1d", "width"] == 25
    csv, md = M.write_baselines_table(df, tmp_path)
    back = pd.read_csv(csv).set_index("model")
    np.testing.assert_array_equal(back["test_accuracy_mean_pct"], table["test_accuracy_mean_pct"])  # full precision
    text = md.read_text()
    assert M.PUBLISHED_SOURCE in text and "| cnn1d | CNN | 25 | 94 |" in text
    # Without the baseline runs: no table, and a reason when asked directly.
    no_baselines = df[df["experiment"] != M.BASELINES_EXPERIMENT]
    assert M.write_baselines_table(no_baselines, tmp_path / "none") == []
    with pytest.raises(F.NoData, match="mnist1d_baselines"):
        M.baselines_table(no_baselines)


def test_fig12_reference_lines_and_ticks(df, built):
    shown = built[3]["fig12_mnist1d_task_vs_width"]
    accuracy = [ax for ax in shown["axes"] if ax["ylabel"] == "test accuracy (%)"]
    mse = [ax for ax in shown["axes"] if ax["ylabel"].startswith("reconstruction MSE")]
    assert len(accuracy) == 2 and len(mse) == 2
    assert [tuple(ax["xticks"]) for ax in accuracy] == [(2.0, 8.0), (4.0, 16.0)]
    assert [tuple(ax["xticks"]) for ax in mse] == [(1.0, 4.0), (1.0, 4.0)]
    ours = M.baselines_table(df)
    for ax in accuracy:
        levels = horizontal_lines(ax["lines"])
        assert {32.0, 68.0, 94.0} <= levels  # published
        assert {round(v, 6) for v in ours["test_accuracy_mean_pct"]} <= levels  # this repository's runs
    assert [vertical_lines(ax["lines"]) for ax in mse] == [{40.0, 100.0}, {64.0, 100.0}]
    legend = " | ".join(shown["legend"])
    assert "logistic regression: published 32%" in legend and "CNN: published 94%" in legend


def test_fig12_without_baselines_or_classifiers(df, tmp_path, monkeypatch):
    cap = Capture(monkeypatch, M)
    paths = M.fig12_mnist1d_task_vs_width(df[df["experiment"] != M.BASELINES_EXPERIMENT], tmp_path)
    assert [p.suffix for p in paths] == [".pdf", ".png"] and all(p.stat().st_size > 5000 for p in paths)
    accuracy = [ax for ax in cap.figs["fig12_mnist1d_task_vs_width"]["axes"] if ax["ylabel"] == "test accuracy (%)"]
    assert all({32.0, 68.0, 94.0} <= horizontal_lines(ax["lines"]) for ax in accuracy)  # the published ones stay
    only_ae = df[df["model"] == "autoencoder"]
    M.fig12_mnist1d_task_vs_width(only_ae, tmp_path)
    assert not [ax for ax in cap.figs["fig12_mnist1d_task_vs_width"]["axes"] if ax["ylabel"] == "test accuracy (%)"]


def test_no_data_when_the_families_are_absent(df, tmp_path):
    others = df[~df["model"].isin([*M.FAMILIES, "resnet1d"])]
    for make in F.MNIST1D_FIGURES.values():
        with pytest.raises(F.NoData):
            make(others, tmp_path)
    with pytest.raises(F.NoData, match="mnist1d_resnet_sweep"):
        M.fig13_mnist1d_resnet_blocks(others, tmp_path)
    # The baselines alone (one width per model) are no sweep.
    with pytest.raises(F.NoData, match="mnist1d_mlp_sweep"):
        M.fig11_mnist1d_redundancy_vs_width(df[df["experiment"] == M.BASELINES_EXPERIMENT], tmp_path)
    assert M.write_mnist1d_tables(others[others["experiment"] != M.BASELINES_EXPERIMENT], tmp_path / "t") == []
    # One family is enough for figure 11.
    assert M.mnist1d_sweeps(df[df["model"] == "cnn1d"]) == [("mnist1d_cnn_sweep", "cnn1d", "mnist1d")]
    M.fig11_mnist1d_redundancy_vs_width(df[df["model"] == "cnn1d"], tmp_path)


# ---------------------------------------------------------------------------------------------------------
# Figure 13 and figure 10: one code path, two families


def test_blocks_code_keeps_to_its_family(df, built, tmp_path):
    figs = built[3]
    for name, channels in (("fig10_resnet_blocks_vs_params", 8), ("fig13_mnist1d_resnet_blocks", RESNET1D_C)):
        shown = figs[name]
        assert f"C = {channels}," in shown["axes"][0]["ylabel"]
        # Width labels beside the accuracy markers (a horizontal offset), never on them.
        labels = shown["axes"][0]["texts"]
        assert labels and all(xy is not None and xy[1] == 0 and abs(xy[0]) >= 3 for _, xy in labels)
    assert "bottleneck: k1 C→w" in figs["fig13_mnist1d_resnet_blocks"]["legend"]
    assert "bottleneck: 1×1 C→w" in figs["fig10_resnet_blocks_vs_params"]["legend"]
    one_d = R.blocks_table(df, model="resnet1d")
    two_d = R.blocks_table(df)
    assert set(one_d["experiment"]) == {"mnist1d_resnet_sweep"} and set(two_d["experiment"]) == {"resnet_sweep"}
    assert len(one_d) == 2 * len(RESNET1D_WIDTHS) and one_d["params"].is_monotonic_increasing
    with pytest.raises(F.NoData, match="resnet_sweep"):
        F.fig10_resnet_blocks_vs_params(df[df["model"] != "resnet"], tmp_path)
    with pytest.raises(F.NoData, match="mnist1d_resnet_sweep"):
        M.fig13_mnist1d_resnet_blocks(df[df["model"] != "resnet1d"], tmp_path)


def test_1d_tables_are_written_by_the_generalised_code(df, tmp_path):
    written = R.write_blocks_table(df, tmp_path, model="resnet1d")
    assert [p.name for p in written] == ["mnist1d_resnet_blocks.csv", "mnist1d_resnet_blocks.md",
                                         "mnist1d_resnet_matched.csv", "mnist1d_resnet_matched.md"]
    assert "ResNet blocks on MNIST-1D" in written[1].read_text() and "k3 w→w" in written[1].read_text()
    matched = R.matched_budgets(df, model="resnet1d")
    for _, row in matched.iterrows():
        assert max(row.basic_params, row.bottleneck_params) / min(row.basic_params, row.bottleneck_params) <= \
            R.MAX_BUDGET_RATIO
        assert row.diff_lo <= row["diff"] <= row.diff_hi
    assert [p.name for p in R.write_blocks_table(df, tmp_path)] == ["resnet_blocks.csv", "resnet_blocks.md",
                                                                    "resnet_matched.csv"]
    with pytest.raises(ValueError, match="resnet3d"):
        R.write_blocks_table(df, tmp_path, model="resnet3d")
