"""``analysis.hypothesis`` (SPEC §9) and figure 14 on hand-built inputs whose answers are derived by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from analysis import hypothesis as H
from analysis.figures_trend import fig14_width_trend
from analysis.hypothesis import (
    TREND_COLUMNS,
    HypothesisConfigError,
    TrendInputError,
    bh_qvalues,
    effects_table,
    holm_adjust,
    load_config,
    ols_slope,
    permutation_slope_p,
    trend_table,
    write_trend_table,
)
from analysis.plotting import NoData

LAST = 3  # last epoch
N_PERM = 999  # (N_PERM + 1)·0.05 = 50: a p <= 0.05 is an exact-level event
N_BOOT = 1000
BASE = {"experiment": "e", "model": "mlp", "activation": "none", "protocol": "clean", "data": "integers",
        "block": "none", "channels": 32, "method": "none", "keep_ratio": 1.0, "stage": "none"}


def tidy(kind: str, layer: str, metric: str, widths, seeds, epochs, values, run_id=None) -> pd.DataFrame:
    """Rows like ``load_runs`` returns (the SCHEMA columns), one per (width, seed, epoch) given."""
    widths, seeds, epochs = (np.asarray(a) for a in (widths, seeds, epochs))
    run = run_id if run_id is not None else np.char.add("r", widths.astype(str))  # one run per width
    return pd.DataFrame({**BASE, "run_id": run, "kind": kind, "width": widths, "seed": seeds, "epoch": epochs,
                         "layer": layer, "metric": metric, "value": np.asarray(values, dtype=float)})


def trained(metric: str, widths, n_seeds: int, init, end, layer: str = "bottleneck", **base) -> pd.DataFrame:
    """Epoch 0, an intermediate epoch (1e6: must be ignored) and the last epoch, for seeds 0..n_seeds − 1 at every
    width (the crossed design); ``init``/``end`` arrays (n_widths, n_seeds)."""
    w = np.repeat(widths, n_seeds)
    s = np.tile(np.arange(n_seeds), len(widths))
    parts = [tidy("trained", layer, metric, w, s, np.full(w.size, ep), np.ravel(v), None)
             for ep, v in ((0, init), (1, np.full(w.size, 1e6)), (LAST, end))]
    out = pd.concat(parts, ignore_index=True)
    for k, v in base.items():
        out[k] = v
    return out


def null(metric: str, widths, values, layer: str = "bottleneck") -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    w = np.repeat(widths, values.size)
    return tidy("null", layer, metric, w, np.tile(np.arange(values.size), len(widths)), np.zeros(w.size),
                np.tile(values, len(widths)), np.char.add("n", w.astype(str)))


# ---------------------------------------------------------------------------------------------------------
# The declared family


def test_the_constants_are_views_of_the_config_file():
    raw = yaml.safe_load(H.CONFIG_FILE.read_text())
    assert H.ALPHA == raw["alpha"] == 0.05
    assert H.STUDIED_LAYERS == ("bottleneck", "reduce", "middle")
    assert H.HEADLINE_LAYERS == ("bottleneck", "reduce")
    assert H.FAMILY_MIN_REPLICATES == 5
    assert H.FAMILY_METRICS == ("mean_nn_abs_cos", "eff_rank_norm", "mean_nn_l1", "min_pair_l1",
                                "act_mean_nn_abs_corr", "act_eff_rank_norm", "act_pc95_frac",
                                "abl_eff_frac", "anchor_prunable_frac", "joint_prunable_frac", "act_r2_others_mean")
    assert H.HEADLINE_METRICS == ("mean_nn_abs_cos", "act_eff_rank_norm", "abl_eff_frac")
    for m in H.FAMILY_METRICS:
        assert H.REDUNDANCY_SIGN[m] == raw["redundancy_sign"][m]
    assert [H.redundancy_sign(m) for m in ("eff_rank_norm", "abl_eff_frac", "anchor_prunable_frac")] == [-1, -1, 1]
    # A threshold suffix finds the @<t> entry; the bare name is the default threshold; unknown metrics have no sign.
    assert H.redundancy_sign("prunable_frac@0.01") == H.redundancy_sign("redundant_frac@0.1") == 1
    assert H.REDUNDANCY_SIGN.get("prunable_frac@0.05", 0) == 1 and H.REDUNDANCY_SIGN.get("loss", 0) == 0
    assert H.metric_level("act_pc95_frac") == "activations" and H.metric_level("prunable_frac@0.01") == "function"
    assert H.metric_level("min_pair_l1") == "weights" and H.metric_level("loss") == ""
    with pytest.raises(TypeError):
        H.REDUNDANCY_SIGN["mean_nn_abs_cos"] = -1  # a view: change the file, not the constant


def test_a_bad_config_is_named_in_one_line(tmp_path):
    raw = yaml.safe_load(H.CONFIG_FILE.read_text())
    del raw["redundancy_sign"]["mean_nn_l1"]
    raw["headline"]["metrics"]["function"] = "not_a_metric"
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(HypothesisConfigError) as err:
        load_config(path)
    assert "mean_nn_l1 has no redundancy_sign" in str(err.value) and "not_a_metric" in str(err.value)
    assert "\n" not in str(err.value) and isinstance(err.value, ValueError)
    assert load_config(H.CONFIG_FILE)["alpha"] == H.ALPHA


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
# The old permutation test (kept to compare sizes)


def test_ols_slope_hand_example():
    # x̄ = 2, ȳ = 3, Σ(x−x̄)(y−ȳ) = 3 + 1 + 0 + 0 + 1 + 3 = 8, Σ(x−x̄)² = 4: slope 2, intercept 3 − 2·2 = −1.
    slope, intercept = ols_slope([1, 1, 2, 2, 3, 3], [0, 2, 3, 3, 4, 6])
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(-1.0)


def test_permutation_p_is_uniform_without_a_trend_when_points_are_exchangeable():
    # 300 groups of iid noise at 3 widths × 10 seeds: the permutation p is (discretely) uniform, so its mean is 1/2
    # (SD of a mean of 300: 0.289/√300 = 0.017) and ~5% fall below 0.05 (Binomial(300, 0.05): 15 ± 3.8).
    x = np.repeat([1.0, 2.0, 3.0], 10)
    Y = np.random.default_rng(1).normal(size=(30, 300))
    p = permutation_slope_p(x, Y, 2000, 2)
    assert p.min() >= 1 / 2001
    assert 0.44 < p.mean() < 0.56
    assert 0.02 <= np.mean(p < 0.05) <= 0.09


def test_permutation_p_undefined_without_spread():
    x = np.repeat([1.0, 2.0, 3.0], 4)
    assert np.isnan(permutation_slope_p(x, np.ones(12), 100, 0)[0])
    assert np.isnan(permutation_slope_p(x, 1 + 1e-12 * x, 100, 0, atol=1e-9)[0])


# ---------------------------------------------------------------------------------------------------------
# The table on tidy frames

WIDTHS = [2, 4, 8, 16, 32]  # log2: 1..5, Σ(x − 3)² = 10 per seed
SEEDS = 40
NULL = np.tile([-1.0, 1.0], 50)  # mean 0, SD (ddof 1) √(100/99)
SEED_SD = 5.0  # a seed effect shared by all widths of a seed: the crossed design's clustering


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = np.log2(WIDTHS)[:, None]
    shape = (len(WIDTHS), SEEDS)
    zeros = np.zeros(shape)
    init = rng.normal(size=shape)  # initial values that vary by seed: the outcome is the paired change
    seed_effect = SEED_SD * rng.normal(size=(1, SEEDS))
    peak = np.array([0.0, 0.1, 0.2, 0.1, 0.0])[:, None]  # a hump with zero linear trend
    parts = [
        # A planted trend: change = 0.5·log2 w + seed effect + N(0, 1).
        trained("mean_nn_abs_cos", WIDTHS, SEEDS, init, init + 0.5 * x + seed_effect + rng.normal(size=shape)),
        null("mean_nn_abs_cos", WIDTHS, NULL),
        # No width effect: the change is noise.
        trained("act_eff_rank_norm", WIDTHS, SEEDS, init, init + rng.normal(size=shape)),
        null("act_eff_rank_norm", WIDTHS, NULL),
        # A hump: no linear trend, a clear width effect.
        trained("eff_rank_norm", WIDTHS, SEEDS, init, init + peak + 0.02 * rng.normal(size=shape)),
        # Degenerate at initialisation (0 for every seed): the final value is tested; it falls with width.
        trained("joint_prunable_frac", WIDTHS, SEEDS, zeros, 1.0 - 0.1 * x + 0.1 * rng.normal(size=shape)),
        # Known levels, the same for every seed: end = 3 at the narrowest width, 5 at the widest; init 1.
        trained("mean_nn_l1", WIDTHS, SEEDS, np.ones(shape), np.where(x == 1, 3.0, np.where(x == 5, 5.0, 4.0))
                + 0 * zeros),
        null("mean_nn_l1", WIDTHS, NULL),
        # Rounding: changes of 1e-12 that grow with the width.
        trained("act_pc95_frac", WIDTHS, SEEDS, np.ones(shape), 1 + 1e-12 * x + 0 * zeros),
        # Outside the family (whole-model loss), and a metric run at two widths only (no row).
        trained("loss", WIDTHS, SEEDS, init, rng.normal(size=shape), layer="model"),
        trained("two_widths", WIDTHS[:2], SEEDS, init[:2], np.ones((2, SEEDS))),
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def table(frame) -> pd.DataFrame:
    return trend_table(frame, n_perm=N_PERM, n_boot=N_BOOT).set_index("metric")


def test_one_row_per_group_of_three_or_more_widths(table):
    assert list(table.columns) == [c for c in TREND_COLUMNS if c != "metric"]
    assert sorted(table.index) == ["act_eff_rank_norm", "act_pc95_frac", "eff_rank_norm", "joint_prunable_frac",
                                   "loss", "mean_nn_abs_cos", "mean_nn_l1"]
    row = table.loc["mean_nn_abs_cos"]
    assert row["widths"] == "2-32" and row["n_widths"] == 5 and row["level"] == "weights"
    assert (row["n_total"], row["n_min_per_width"], row["n_max_per_width"], row["n_dropped"]) == (200, 40, 40, 0)
    assert (row["narrow"], row["wide"], row["n_narrow"], row["n_wide"]) == (2, 32, 40, 40)
    assert row["width_list"] == "2;4;8;16;32" and row["n_list"] == "40;40;40;40;40"
    assert row["weights"] == "rademacher" and row["n_draws"] >= N_PERM


def test_planted_trend_found_with_a_cluster_robust_ci(table):
    row = table.loc["mean_nn_abs_cos"]
    assert row["outcome"] == "change"
    # Every seed's slope is 0.5 + noise with SD σ/√Σ(x − x̄)² = 1/√10 (the seed effect is the same at every width and
    # drops out), so the slope's SE is 1/√(40·10) = 0.05: slope 0.5 ± 0.15 (3 SE).
    assert row["slope"] == pytest.approx(0.5, abs=0.15)
    # The CR1 SE estimates 0.05 from 40 seeds: relative SD ~1/√(2·39) = 0.11, so within 35% (3 SDs).
    assert row["slope_se"] == pytest.approx(0.05, rel=0.35)
    # The CI resamples seeds with all their widths, so the seed effect (SD 5) does not widen it: ~2·1.96·0.05.
    # (Resampling within widths would make it √(1 + 25) ≈ 5 times wider.)
    assert row["slope_lo"] < 0.5 < row["slope_hi"]
    assert row["slope_hi"] - row["slope_lo"] == pytest.approx(2 * 1.96 * 0.05, rel=0.35)
    assert row["trend_p"] == pytest.approx(1 / (N_PERM + 1))  # t ≈ 10: no sign flip reaches it
    assert row["trend_p_cr"] < 1e-6 and row["omni_p"] == pytest.approx(1 / (N_PERM + 1))
    assert row["profile"] == "rising" and row["n_falling_pairs"] == 0 and row["n_rising_pairs"] > 0
    assert row["argmax_width"] == 32 and row["argmin_width"] == 2
    # Widest − narrowest: 0.5·(5 − 1) = 2 ± 3·√(2/40) = 0.67 (the seed effect cancels in the paired difference).
    assert row["contrast"] == pytest.approx(2.0, abs=0.67)
    assert row["contrast"] == pytest.approx(row["outcome_wide"] - row["outcome_narrow"])
    assert row["outcome_narrow"] == row["change_narrow"]  # the outcome is the change
    assert row["contrast_lo"] < row["contrast"] < row["contrast_hi"]
    assert row["contrast_p"] == pytest.approx(1 / (N_PERM + 1))
    assert row["verdict"] == "wider gains more redundancy"  # |cos|: larger is more redundant


def test_no_width_effect_is_not_a_finding(table):
    row = table.loc["act_eff_rank_norm"]
    assert row["slope_lo"] < 0 < row["slope_hi"]  # true slope 0; a 95% CI, fixed seed
    assert row["trend_p"] > 0.05 and row["omni_p"] > 0.05
    assert row["profile"] == "no evidence" and row["verdict"] == "no evidence of a width effect"


def test_a_hump_is_a_width_effect_not_no_evidence(table):
    row = table.loc["eff_rank_norm"]
    # 0, .1, .2, .1, 0 with noise SD 0.02: no linear trend (the true slope is 0), adjacent widths 0.1 = 30 SEs apart.
    assert row["trend_p"] > 0.05 and row["slope_lo"] < 0 < row["slope_hi"]
    assert row["omni_p"] == pytest.approx(1 / (N_PERM + 1))
    assert row["profile"] == "non-monotone" and row["n_rising_pairs"] > 0 and row["n_falling_pairs"] > 0
    assert row["argmax_width"] == 8
    assert row["verdict"] == "non-monotone width effect"


def test_a_metric_degenerate_at_initialisation_tests_its_final_value(table):
    row = table.loc["joint_prunable_frac"]
    assert row["outcome"] == "final"
    # final = 1 − 0.1·log2 w + N(0, 0.1²): slope −0.1 ± 3·0.1/√400 = 0.015.
    assert row["slope"] == pytest.approx(-0.1, abs=0.015)
    assert row["slope"] == pytest.approx(row["end_slope"])
    assert row["profile"] == "falling"
    assert row["verdict"] == "narrower ends with more redundancy"  # a larger prunable share is more redundant


def test_effects_against_the_null(table, frame):
    row = table.loc["mean_nn_l1"]
    # Null: ±1, mean 0, SD √(100/99); final value 3 at w = 2 and 5 at w = 32 for every seed.
    assert row["gap_narrow"] == pytest.approx(3.0) and row["gap_wide"] == pytest.approx(5.0)
    assert row["d_narrow"] == pytest.approx(3 / np.sqrt(100 / 99))
    assert row["d_wide"] == pytest.approx(5 / np.sqrt(100 / 99))
    assert row["d_narrow_lo"] <= row["d_narrow"] <= row["d_narrow_hi"]
    assert row["n_null_narrow"] == row["n_null_wide"] == NULL.size
    assert row["pct_narrow"] == row["pct_wide"] == 100.0  # every seed above every null draw
    assert row["contrast"] == pytest.approx(2.0)  # final 3 at w = 2, 5 at w = 32 (init 1 for all: outcome final)
    assert np.isnan(row["gap_scale"]) and np.isnan(row["gap_z_wide"])  # no seed spread: no yardstick
    assert np.isnan(table.loc["loss", "gap_narrow"])  # no null
    # The yardstick: root mean square over widths of the seeds' SD of the final value; gap_z = gap / it.
    cos = table.loc["mean_nn_abs_cos"]
    pairs = frame[(frame["metric"] == "mean_nn_abs_cos") & (frame["kind"] == "trained") & (frame["epoch"] == LAST)]
    sds = pairs.groupby("width")["value"].std(ddof=1).to_numpy()
    assert cos["gap_scale"] == pytest.approx(np.sqrt(np.mean(sds ** 2)))
    assert cos["gap_z_narrow"] == pytest.approx(cos["gap_narrow"] / cos["gap_scale"])
    assert cos["gap_z_wide_lo"] == pytest.approx(cos["gap_wide_lo"] / cos["gap_scale"])
    assert cos["gap_narrow_lo"] < cos["gap_narrow"] < cos["gap_narrow_hi"]


def test_effects_table_has_every_width_and_the_trend_tables_ends(frame, table):
    eff = effects_table(frame, n_boot=N_BOOT)
    cos = eff[eff["metric"] == "mean_nn_abs_cos"].set_index("width")
    assert list(cos.index) == WIDTHS and (cos["n_seeds"] == SEEDS).all() and (cos["n_null"] == NULL.size).all()
    assert cos["gap_scale"].nunique() == 1  # one yardstick for every width
    row = table.loc["mean_nn_abs_cos"]
    for tag, w in (("narrow", 2), ("wide", 32)):
        for a, b in (("gap", f"gap_{tag}"), ("gap_lo", f"gap_{tag}_lo"), ("gap_z_hi", f"gap_z_{tag}_hi"),
                     ("d_null", f"d_{tag}"), ("d_null_hi", f"d_{tag}_hi"), ("pct_null", f"pct_{tag}")):
            assert cos.loc[w, a] == pytest.approx(row[b], rel=1e-12)
    assert cos.loc[2, "outcome_mean"] == pytest.approx(row["outcome_narrow"])
    assert (cos["outcome_lo"] < cos["outcome_mean"]).all() and (cos["outcome_mean"] < cos["outcome_hi"]).all()
    # The two-width metric has effect rows although it has no trend row.
    assert set(eff.loc[eff["metric"] == "two_widths", "width"]) == {2, 4}


def test_no_spread_across_seeds_is_no_test(table):
    for metric in ("act_pc95_frac", "mean_nn_l1"):
        row = table.loc[metric]
        assert np.isnan(row["trend_p"]) and np.isnan(row["omni_p"]) and np.isnan(row["q"])
        assert row["profile"] == "no test" and row["verdict"] == "no test (no spread across seeds beyond rounding)"


def test_family_headline_and_adjusted_values(table):
    fam = table[table["in_family"]]
    assert set(fam.index) == {"mean_nn_abs_cos", "act_eff_rank_norm", "eff_rank_norm", "joint_prunable_frac",
                              "mean_nn_l1", "act_pc95_frac"}
    assert set(table.index[table["headline"]]) == {"mean_nn_abs_cos", "act_eff_rank_norm"}
    # BH over the family's trend and omnibus tests together; Holm over the headline rows' two tests each.
    q = bh_qvalues(np.r_[fam["trend_p"].to_numpy(), fam["omni_p"].to_numpy()])
    np.testing.assert_allclose(fam["q"], q[:len(fam)], equal_nan=True)
    np.testing.assert_allclose(fam["omni_q"], q[len(fam):], equal_nan=True)
    head = table[table["headline"]]
    h = holm_adjust(np.r_[head["trend_p"].to_numpy(), head["omni_p"].to_numpy()])
    np.testing.assert_allclose(head["holm"], h[:len(head)])
    np.testing.assert_allclose(head["omni_holm"], h[len(head):])
    np.testing.assert_allclose(head["verdict_p"], np.fmin(head["holm"], head["omni_holm"]))
    other = fam[~fam["headline"] & fam["q"].notna()]
    np.testing.assert_allclose(other["verdict_p"], np.fmin(other["q"], other["omni_q"]))
    # "no evidence" exactly where neither adjusted value is below α.
    tested = fam[fam["verdict_p"].notna()]
    assert ((tested["profile"] == "no evidence") == (tested["verdict_p"] >= H.ALPHA)).all()
    loss = table.loc["loss"]
    assert not loss["in_family"] and np.isnan(loss["q"]) and loss["verdict"] == ""


def test_a_groups_numbers_do_not_depend_on_the_other_groups(frame, table):
    alone = trend_table(frame[frame["metric"] == "mean_nn_abs_cos"], n_perm=N_PERM, n_boot=N_BOOT).iloc[0]
    # The same weights (drawn per seed id) and resamples (keyed by the design); only the matrix products' rounding
    # may differ with the number of columns they are batched with.
    for col in ("slope", "slope_lo", "slope_hi", "slope_se", "trend_p", "omni_p", "contrast_lo", "contrast_p",
                "d_narrow_lo", "d_wide_hi", "gap_wide_hi", "seed_corr"):
        assert alone[col] == pytest.approx(table.loc["mean_nn_abs_cos", col], rel=1e-12)


def test_unbalanced_seeds_and_dropped_replicates():
    # 3 widths × 6 seeds; metric b loses seed 3 at w = 4 (no final row) and seed 0 at w = 8 (NaN final value).
    widths = [2, 4, 8]
    rng = np.random.default_rng(3)
    init = rng.normal(size=(3, 6))
    end = init + np.arange(18.0).reshape(3, 6) / 6 + rng.normal(size=(3, 6))
    b = trained("b", widths, 6, init, end.copy())
    b = b[~((b["width"] == 4) & (b["seed"] == 3) & (b["epoch"] == LAST))]
    b.loc[(b["width"] == 8) & (b["seed"] == 0) & (b["epoch"] == LAST), "value"] = np.nan
    frame = pd.concat([trained("a", widths, 6, init, end), b], ignore_index=True)
    t = trend_table(frame, n_perm=99, n_boot=100).set_index("metric")
    assert (t.loc["a", "n_total"], t.loc["a", "n_dropped"], t.loc["a", "n_replicates"]) == (18, 0, 6)
    assert (t.loc["b", "n_total"], t.loc["b", "n_dropped"], t.loc["b", "n_replicates"]) == (16, 2, 6)
    assert (t.loc["b", "n_min_per_width"], t.loc["b", "n_max_per_width"]) == (5, 6)
    assert t.loc["b", "n_list"] == "6;5;5" and t.loc["b", "weights"] == "webb"  # 6 seeds: Webb's weights
    # The slope is OLS over the 16 points that exist (x̄ and Σ(x − x̄)² of those points).
    x = np.log2(np.repeat(widths, 6)).reshape(3, 6)
    keep = np.ones((3, 6), bool)
    keep[1, 3] = keep[2, 0] = False
    slope, _ = ols_slope(x[keep], (end - init)[keep])
    assert t.loc["b", "slope"] == pytest.approx(slope, rel=1e-12)
    assert np.isfinite(t.loc["b", "trend_p"]) and t.loc["b", "slope_lo"] < t.loc["b", "slope_hi"]
    assert not t["in_family"].any()  # not redundancy metrics


def test_monte_carlo_precision_near_a_cut_off():
    # A weak trend (slope 0.1 per doubling, SE 0.05: t ≈ 2, p near 0.05) in a family of one row (two tests). With 99
    # draws the SE of p near 0.05 is 0.022, so the row starts within 3 SEs of its cut-off and must get more draws;
    # it stops when it is 3 SEs away or at the cap, flagged borderline.
    rng = np.random.default_rng(11)
    x = np.log2(WIDTHS)[:, None]
    init = rng.normal(size=(len(WIDTHS), SEEDS))
    frame = trained("mean_nn_abs_cos", WIDTHS, SEEDS, init, init + 0.1 * x + rng.normal(size=init.shape))
    row = trend_table(frame, n_perm=99, n_boot=100, max_draws=99 * 16).iloc[0]
    assert row["n_draws"] > 99
    n, p = row["n_draws"], row["trend_p"]
    cut = H.ALPHA * p / row["holm"]
    far = abs(p - cut) >= H.MC_SE * np.sqrt(p * (1 - p) / n)
    omni_cut = H.ALPHA * row["omni_p"] / row["omni_holm"]
    omni_far = abs(row["omni_p"] - omni_cut) >= H.MC_SE * np.sqrt(row["omni_p"] * (1 - row["omni_p"]) / n)
    assert row["borderline"] == (not (far and omni_far))
    assert row["borderline"] or n < 99 * 16 or (far and omni_far)


def test_at_a_fraction_of_the_budget():
    # Epochs 0, 2, 4, 6, 8, 10: at = 0.5 -> 5, a tie between 4 and 6 that goes to the later one. The trend is planted
    # at epoch 6 only (elsewhere the value is flat), so the slope at half the budget is 1 and at the end is 0.
    widths, seeds = [2, 4, 8], 10
    rng = np.random.default_rng(2)
    init = rng.normal(size=(3, seeds))
    x = np.log2(widths)[:, None]
    w = np.repeat(widths, seeds)
    s = np.tile(np.arange(seeds), 3)
    parts = []
    for ep in (0, 2, 4, 6, 8, 10):
        v = init + (x + 0.01 * rng.normal(size=init.shape) if ep == 6 else 0.0)
        parts.append(tidy("trained", "bottleneck", "m", w, s, np.full(w.size, ep), np.ravel(v)))
    frame = pd.concat(parts, ignore_index=True)
    half = trend_table(frame, n_perm=99, n_boot=100, at=0.5).iloc[0]
    final = trend_table(frame, n_perm=99, n_boot=100).iloc[0]
    assert half["slope"] == pytest.approx(1.0, abs=0.01) and half["profile"] == "rising"
    assert final["profile"] == "no test"  # the change is exactly 0 at the last epoch


def test_bad_input_is_one_line():
    with pytest.raises(TrendInputError) as err:
        trend_table(pd.DataFrame({"experiment": ["e"], "value": [1.0]}))
    msg = str(err.value)
    assert "\n" not in msg and "run_id" in msg and "seed" in msg and isinstance(err.value, ValueError)
    two = trained("m", [2, 4], 5, np.zeros((2, 5)), np.random.default_rng(0).normal(size=(2, 5)))
    assert trend_table(two).empty  # the default: an empty table (build_all relies on it)
    with pytest.raises(TrendInputError, match=r"the most is 2\)$"):
        trend_table(two, strict=True)
    with pytest.raises(TrendInputError, match="lacks column"):
        effects_table(two.drop(columns=["epoch"]))


def test_empty_and_writing(frame, tmp_path):
    empty = trend_table(frame[frame["metric"] == "two_widths"])
    assert empty.empty and list(empty.columns) == TREND_COLUMNS
    assert write_trend_table(frame[frame["metric"] == "two_widths"], tmp_path) == []
    paths = write_trend_table(frame, tmp_path, table=trend_table(frame, n_perm=N_PERM, n_boot=200))
    assert [p.name for p in paths] == ["trend.csv", "trend.md"]
    back = pd.read_csv(paths[0])
    assert len(back) == 7 and list(back.columns) == TREND_COLUMNS
    text = paths[1].read_text()
    assert "Declared family" in text and "Headline tests" in text and "mean_nn_abs_cos" in text
    assert "wild cluster bootstrap" in text and "cluster-robust" in text and "permutation" not in text
    half = write_trend_table(frame, tmp_path, table=trend_table(frame, n_perm=99, n_boot=100, at=0.5),
                             name="trend_half")
    assert [p.name for p in half] == ["trend_half.csv", "trend_half.md"]
    eff = H.write_effects_table(frame, tmp_path)
    assert [p.name for p in eff] == ["effects.csv", "effects.md"]
    assert list(pd.read_csv(eff[0]).columns) == H.EFFECT_COLUMNS and "shrinks with width" in eff[1].read_text()


def test_fig14(tmp_path):
    # Figure 14 draws the headline rows of the family (a trend over 40 seeds at 5 widths; a metric degenerate at
    # initialisation, drawn as its final value), with the new columns (profile, omnibus p, outcome).
    rng = np.random.default_rng(4)
    x = np.log2(WIDTHS)[:, None]
    init = rng.normal(size=(len(WIDTHS), SEEDS))
    frame = pd.concat([trained("mean_nn_abs_cos", WIDTHS, SEEDS, init, init + 0.5 * x + rng.normal(size=init.shape)),
                       trained("abl_eff_frac", WIDTHS, SEEDS, np.zeros_like(init), 1 - 0.1 * x
                               + 0.1 * rng.normal(size=init.shape)),
                       trained("loss", WIDTHS, SEEDS, init, init, layer="model")], ignore_index=True)
    table = trend_table(frame, n_perm=N_PERM, n_boot=200)
    assert "jt_p" not in table.columns
    assert set(table.loc[table["headline"], "outcome"]) == {"change", "final"}
    paths = fig14_width_trend(frame, tmp_path, table=table)
    assert [p.name for p in paths] == ["fig14_width_trend.pdf", "fig14_width_trend.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert fig14_width_trend(frame, tmp_path)[1].stat().st_size > 0  # the table computed by the figure itself
    with pytest.raises(NoData):
        fig14_width_trend(frame[frame["metric"] == "loss"], tmp_path)


def test_the_issues_peaked_profile_is_not_no_evidence():
    """The example of the issue: a change profile 0, .025, .057, .167, .194, .145, .027, .006 over w = 1…128 whose
    per-width 95% CIs do not overlap (SD 0.005 over 20 seeds: half-width 1.96·0.005/√20 = 0.0022, below half the
    smallest gap between neighbours, 0.006)."""
    widths = 2 ** np.arange(8)
    profile = np.array([0, 0.025, 0.057, 0.167, 0.194, 0.145, 0.027, 0.006])[:, None]
    rng = np.random.default_rng(8)
    init = rng.normal(size=(8, 20))
    frame = trained("abl_eff_frac", widths, 20, init, init + profile + 0.005 * rng.normal(size=(8, 20)))
    row = trend_table(frame, n_perm=N_PERM, n_boot=200).iloc[0]
    assert row["headline"] and row["profile"] == "non-monotone" and row["verdict"] == "non-monotone width effect"
    assert row["argmax_width"] == 16 and row["omni_holm"] < H.ALPHA
