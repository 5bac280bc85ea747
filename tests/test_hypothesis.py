"""``analysis.hypothesis`` (SPEC §9) and figure 14 on hand-built inputs whose answers are derived by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.figures_trend import fig14_width_trend
from analysis.hypothesis import (
    TREND_COLUMNS,
    bh_qvalues,
    holm_adjust,
    jonckheere_p,
    ols_slope,
    permutation_slope_p,
    trend_table,
    write_trend_table,
)
from analysis.plotting import NoData

LAST = 3  # last epoch
N_PERM = 2000
N_BOOT = 1000
BASE = {"experiment": "e", "model": "mlp", "activation": "none", "protocol": "clean", "data": "integers",
        "block": "none", "channels": 32, "method": "none", "keep_ratio": 1.0, "stage": "none"}


def tidy(kind: str, layer: str, metric: str, widths, seeds, epochs, values, run_id=None) -> pd.DataFrame:
    """Rows like ``load_runs`` returns (the SCHEMA columns), one per (width, seed, epoch) given."""
    widths, seeds, epochs = (np.asarray(a) for a in (widths, seeds, epochs))
    run = run_id if run_id is not None else np.char.add("r", widths.astype(str))  # one run per width
    return pd.DataFrame({**BASE, "run_id": run, "kind": kind, "width": widths, "seed": seeds, "epoch": epochs,
                         "layer": layer, "metric": metric, "value": np.asarray(values, dtype=float)})


def trained(metric: str, widths, n_seeds: int, init, end, layer: str = "bottleneck") -> pd.DataFrame:
    """Epoch 0, an intermediate epoch (1e6: must be ignored) and the last epoch, for n_seeds seeds at each width;
    ``init``/``end`` arrays (n_widths, n_seeds)."""
    w = np.repeat(widths, n_seeds)
    s = np.tile(np.arange(n_seeds), len(widths))
    parts = [tidy("trained", layer, metric, w, s, np.full(w.size, ep), np.ravel(v), None)
             for ep, v in ((0, init), (1, np.full(w.size, 1e6)), (LAST, end))]
    return pd.concat(parts, ignore_index=True)


def null(metric: str, widths, values, layer: str = "bottleneck") -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    w = np.repeat(widths, values.size)
    return tidy("null", layer, metric, w, np.tile(np.arange(values.size), len(widths)), np.zeros(w.size),
                np.tile(values, len(widths)), np.char.add("n", w.astype(str)))


# ---------------------------------------------------------------------------------------------------------
# Multiplicity


def test_bh_hand_example():
    # Sorted: 0.005, 0.01, 0.03, 0.04 (m = 4) -> p·m/rank = 0.02, 0.02, 0.04, 0.04; already monotone.
    q = bh_qvalues([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(q, [0.02, 0.04, 0.04, 0.02])
    # p·m/rank = 0.12, 0.0675, 0.05: the step-up minimum from the top makes all three 0.05.
    np.testing.assert_allclose(bh_qvalues([0.04, 0.045, 0.05]), [0.05, 0.05, 0.05])
    # 0.5·2/1 = 1.0, 0.9·2/2 = 0.9 -> 0.9, 0.9.
    np.testing.assert_allclose(bh_qvalues([0.5, 0.9]), [0.9, 0.9])
    # NaN is no test: kept NaN and not counted in m (the first example again).
    q = bh_qvalues([0.01, np.nan, 0.04, 0.03, 0.005])
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2, 3, 4]], [0.02, 0.04, 0.04, 0.02])
    assert bh_qvalues([]).size == 0


def test_bh_matches_scipy():
    p = np.random.default_rng(5).uniform(0, 1, 200) ** 3
    np.testing.assert_allclose(bh_qvalues(p), sps.false_discovery_control(p), rtol=1e-12)


def test_holm_hand_example():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max -> 0.02, 0.03, 0.06, 0.06.
    np.testing.assert_allclose(holm_adjust([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # 0.3·2 = 0.6, 0.4·1 = 0.4 -> running max 0.6, 0.6; capped at 1.
    np.testing.assert_allclose(holm_adjust([0.3, 0.4]), [0.6, 0.6])
    np.testing.assert_allclose(holm_adjust([0.6, 0.7]), [1.0, 1.0])
    out = holm_adjust([np.nan, 0.02])
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.02)


# ---------------------------------------------------------------------------------------------------------
# The tests


def test_ols_slope_hand_example():
    # x̄ = 2, ȳ = 3, Σ(x−x̄)(y−ȳ) = 3 + 1 + 0 + 0 + 1 + 3 = 8, Σ(x−x̄)² = 4: slope 2, intercept 3 − 2·2 = −1.
    slope, intercept = ols_slope([1, 1, 2, 2, 3, 3], [0, 2, 3, 3, 4, 6])
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(-1.0)


def test_permutation_p_is_uniform_without_a_trend():
    # 300 groups of pure noise at 3 widths × 10 seeds: under H0 the permutation p is (discretely) uniform, so its
    # mean is 1/2 (SD of a mean of 300: 0.289/√300 = 0.017) and ~5% fall below 0.05 (Binomial(300, 0.05): 15 ± 3.8).
    x = np.repeat([1.0, 2.0, 3.0], 10)
    Y = np.random.default_rng(1).normal(size=(30, 300))
    p = permutation_slope_p(x, Y, N_PERM, 2)
    assert p.min() >= 1 / (N_PERM + 1)
    assert 0.44 < p.mean() < 0.56
    assert 0.02 <= np.mean(p < 0.05) <= 0.09


def test_permutation_p_reaches_its_floor_for_a_planted_trend():
    # y = 10x + noise in [−1, 1]: the widths' values do not overlap, so (rearrangement inequality) |T_π| >= |T| only
    # for a permutation that keeps every point at its own width (shuffling within a width) or maps them onto the
    # exact reverse order; at most 2·(10!)³ of the 30! permutations, a share < 1e-12. With 2,000 permutations none
    # is drawn except with probability < 1e-9, so p is the floor 1/(n_perm + 1), exactly.
    x = np.repeat([1.0, 2.0, 3.0], 10)
    y = 10 * x + np.random.default_rng(3).uniform(-1, 1, 30)
    assert permutation_slope_p(x, y, N_PERM, 4)[0] == pytest.approx(1 / (N_PERM + 1))


def test_permutation_p_undefined_without_spread():
    x = np.repeat([1.0, 2.0, 3.0], 4)
    assert np.isnan(permutation_slope_p(x, np.ones(12), 100, 0)[0])
    assert np.isnan(permutation_slope_p(x, 1 + 1e-12 * x, 100, 0, atol=1e-9)[0])


def test_jonckheere_hand_examples():
    # [1,2] < [3,4] < [5,6]: every one of the 3·4 = 12 cross-group pairs is ordered, J = 12; mean (36 − 12)/4 = 6;
    # variance (N²(2N+3) − Σ n²(2n+3))/72 = (36·15 − 3·4·7)/72 = 456/72.
    assert jonckheere_p(np.arange(1.0, 7.0), np.array([2, 2, 2])) == pytest.approx(
        2 * sps.norm.sf(6 / np.sqrt(456 / 72)))
    # Ties: [1,1] vs [1,2]. J = 2·(0.5 + 1) = 3; mean (16 − 8)/4 = 2; tie-corrected variance
    # (4·3·13 − 2·2·1·9 − 3·2·11)/72 + 0 + (2 + 2)(3·2)/(8·4·3) = 54/72 + 24/96 = 1 (the exact permutation
    # variance: J is 3 or 1 with probability 1/2 each), so z = 1.
    assert jonckheere_p(np.array([1.0, 1.0, 1.0, 2.0]), np.array([2, 2])) == pytest.approx(2 * sps.norm.sf(1.0))
    assert np.isnan(jonckheere_p(np.ones(6), np.array([2, 2, 2])))


# ---------------------------------------------------------------------------------------------------------
# The table on tidy frames

WIDTHS = [2, 4, 8, 16, 32]  # log2: 1..5, Σ(x − 3)² = 10 per seed
SEEDS = 40
NULL = np.tile([-1.0, 1.0], 50)  # mean 0, SD (ddof 1) √(100/99)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = np.log2(WIDTHS)[:, None]
    zeros = np.zeros((len(WIDTHS), SEEDS))
    parts = [
        # A planted trend: change = 0.5·log2 w + N(0, 1).
        trained("mean_nn_abs_cos", WIDTHS, SEEDS, zeros, 0.5 * x + rng.normal(size=zeros.shape)),
        null("mean_nn_abs_cos", WIDTHS, NULL),
        # No trend: the change is noise.
        trained("act_eff_rank_norm", WIDTHS, SEEDS, zeros, rng.normal(size=zeros.shape)),
        null("act_eff_rank_norm", WIDTHS, NULL),
        # Known levels: end = 3 at every seed of the narrowest width, 5 at the widest; init 1.
        trained("mean_nn_l1", WIDTHS, SEEDS, np.ones_like(zeros),
                np.where(x == 1, 3.0, np.where(x == 5, 5.0, 4.0)) + 0 * zeros),
        null("mean_nn_l1", WIDTHS, NULL),
        # Rounding: changes of 1e-12 that grow with the width.
        trained("act_pc95_frac", WIDTHS, SEEDS, np.ones_like(zeros), 1 + 1e-12 * x + 0 * zeros),
        # Outside the family (whole-model loss), and a metric run at two widths only (no row).
        trained("loss", WIDTHS, SEEDS, np.ones_like(zeros), rng.normal(size=zeros.shape), layer="model"),
        trained("two_widths", WIDTHS[:2], SEEDS, np.zeros((2, SEEDS)), np.ones((2, SEEDS))),
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def table(frame) -> pd.DataFrame:
    return trend_table(frame, n_perm=N_PERM, n_boot=N_BOOT).set_index("metric")


def test_one_row_per_group_of_three_or_more_widths(table):
    assert list(table.columns) == [c for c in TREND_COLUMNS if c != "metric"]
    assert sorted(table.index) == ["act_eff_rank_norm", "act_pc95_frac", "loss", "mean_nn_abs_cos", "mean_nn_l1"]
    row = table.loc["mean_nn_abs_cos"]
    assert row["widths"] == "2-32" and row["n_widths"] == 5
    assert (row["n_total"], row["n_min_per_width"], row["n_max_per_width"], row["n_dropped"]) == (200, 40, 40, 0)
    assert (row["narrow"], row["wide"], row["n_narrow"], row["n_wide"]) == (2, 32, 40, 40)


def test_planted_trend_found_with_a_ci_of_the_expected_width(table):
    row = table.loc["mean_nn_abs_cos"]
    # OLS standard error σ/√Σ(x − x̄)² = 1/√(40·10) = 0.05: the slope is 0.5 ± 0.15 (3 SE), p at its floor.
    assert row["slope"] == pytest.approx(0.5, abs=0.15)
    assert row["slope_lo"] < 0.5 < row["slope_hi"]
    assert row["slope_hi"] - row["slope_lo"] == pytest.approx(2 * 1.96 * 0.05, rel=0.2)
    assert row["trend_p"] == pytest.approx(1 / (N_PERM + 1))
    assert row["jt_p"] < 1e-6
    assert row["contrast_lo"] < row["contrast"] < row["contrast_hi"]
    assert row["contrast"] == pytest.approx(row["change_wide"] - row["change_narrow"])
    # Widest − narrowest: 0.5·(5 − 1) = 2 ± 3·√(2/40) = 0.67.
    assert row["contrast"] == pytest.approx(2.0, abs=0.67)
    assert row["contrast_p"] == pytest.approx(1 / (N_PERM + 1))
    assert row["verdict"] == "wider gains more redundancy"  # |cos|: larger is more redundant


def test_no_trend_is_not_a_finding(table):
    row = table.loc["act_eff_rank_norm"]
    assert row["slope_lo"] < 0 < row["slope_hi"]  # true slope 0; a 95% CI, fixed seed
    assert row["trend_p"] > 0.05
    assert row["verdict"] == "no width trend"


def test_bootstrap_ci_covers_the_true_slope(tmp_path):
    # 40 groups with the planted slope 0.5: ~95% of the CIs contain it (Binomial(40, 0.95): 38 ± 1.4).
    rng = np.random.default_rng(7)
    x = np.log2(WIDTHS)[:, None]
    zeros = np.zeros((len(WIDTHS), 20))
    parts = [trained(f"m{i}", WIDTHS, 20, zeros, 0.5 * x + rng.normal(size=zeros.shape)) for i in range(40)]
    t = trend_table(pd.concat(parts, ignore_index=True), n_perm=200, n_boot=N_BOOT)
    covered = (t["slope_lo"] < 0.5) & (t["slope_hi"] > 0.5)
    assert covered.sum() >= 34


def test_effect_size_against_the_null(table):
    row = table.loc["mean_nn_l1"]
    # Null: ±1, mean 0, SD √(100/99); final value 3 at w = 2 and 5 at w = 32 for every seed.
    assert row["d_narrow"] == pytest.approx(3 / np.sqrt(100 / 99))
    assert row["d_wide"] == pytest.approx(5 / np.sqrt(100 / 99))
    assert row["d_narrow_lo"] <= row["d_narrow"] <= row["d_narrow_hi"]
    assert row["n_null_narrow"] == row["n_null_wide"] == NULL.size
    assert row["pct_narrow"] == row["pct_wide"] == 100.0  # every seed above every null draw
    assert table.loc["mean_nn_l1", "contrast"] == pytest.approx(2.0)  # change 2 at w = 2, 4 at w = 32
    assert np.isnan(table.loc["loss", "d_narrow"])  # no null


def test_rounding_is_no_test(table):
    row = table.loc["act_pc95_frac"]
    assert np.isnan(row["trend_p"]) and np.isnan(row["jt_p"]) and np.isnan(row["q"])
    assert row["verdict"] == "no test (change is rounding)"


def test_family_headline_and_adjusted_values(table):
    fam = table[table["in_family"]]
    assert set(fam.index) == {"mean_nn_abs_cos", "act_eff_rank_norm", "mean_nn_l1", "act_pc95_frac"}
    assert set(table.index[table["headline"]]) == {"mean_nn_abs_cos", "act_eff_rank_norm"}
    np.testing.assert_allclose(fam["q"], bh_qvalues(fam["trend_p"].to_numpy()), equal_nan=True)
    head = table[table["headline"]]
    np.testing.assert_allclose(head["holm"], holm_adjust(head["trend_p"].to_numpy()))
    np.testing.assert_allclose(head["verdict_p"], head["holm"])
    other = fam[~fam["headline"] & fam["q"].notna()]
    np.testing.assert_allclose(other["verdict_p"], other["q"])
    loss = table.loc["loss"]
    assert not loss["in_family"] and np.isnan(loss["q"]) and loss["verdict"] == ""


def test_a_groups_numbers_do_not_depend_on_the_other_groups(frame, table):
    alone = trend_table(frame[frame["metric"] == "mean_nn_abs_cos"], n_perm=N_PERM, n_boot=N_BOOT).iloc[0]
    # The same permutations and resamples (seeded by the design, not by the order of the groups); only the matrix
    # products' rounding may differ with the number of columns they are batched with.
    for col in ("slope", "slope_lo", "slope_hi", "trend_p", "contrast_lo", "d_narrow_lo", "d_wide_hi"):
        assert alone[col] == pytest.approx(table.loc["mean_nn_abs_cos", col], rel=1e-12)


def test_dropped_seeds_are_counted():
    # 3 widths × 4 seeds; metric b loses seed 3 at w = 4 (no final row) and seed 0 at w = 8 (NaN final value).
    widths, zeros = [2, 4, 8], np.zeros((3, 4))
    end = np.arange(12.0).reshape(3, 4)
    b = trained("b", widths, 4, zeros, end.copy())
    b = b[~((b["width"] == 4) & (b["seed"] == 3) & (b["epoch"] == LAST))]
    b.loc[(b["width"] == 8) & (b["seed"] == 0) & (b["epoch"] == LAST), "value"] = np.nan
    frame = pd.concat([trained("a", widths, 4, zeros, end), b], ignore_index=True)
    t = trend_table(frame, n_perm=100, n_boot=100).set_index("metric")
    assert (t.loc["a", "n_total"], t.loc["a", "n_dropped"], t.loc["a", "n_replicates"]) == (12, 0, 4)
    assert (t.loc["b", "n_total"], t.loc["b", "n_dropped"], t.loc["b", "n_replicates"]) == (10, 2, 4)
    assert (t.loc["b", "n_min_per_width"], t.loc["b", "n_max_per_width"]) == (3, 4)
    assert not t["in_family"].any()  # fewer than 5 replicates, and not redundancy metrics


def test_empty_and_writing(frame, tmp_path):
    empty = trend_table(frame[frame["metric"] == "two_widths"])
    assert empty.empty and list(empty.columns) == TREND_COLUMNS
    assert write_trend_table(frame[frame["metric"] == "two_widths"], tmp_path) == []
    paths = write_trend_table(frame, tmp_path)
    assert [p.name for p in paths] == ["trend.csv", "trend.md"]
    back = pd.read_csv(paths[0])
    assert len(back) == 5 and list(back.columns) == TREND_COLUMNS
    text = paths[1].read_text()
    assert "Declared family" in text and "Headline tests" in text and "mean_nn_abs_cos" in text


def test_fig14(frame, tmp_path):
    paths = fig14_width_trend(frame, tmp_path)
    assert [p.name for p in paths] == ["fig14_width_trend.pdf", "fig14_width_trend.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    with pytest.raises(NoData):
        fig14_width_trend(frame[frame["metric"] == "loss"], tmp_path)
