"""``analysis.stats`` on hand-built tidy frames whose answers are known in advance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.stats import (
    GROUP,
    N_BOOT,
    bootstrap_mean_ci,
    paired_values,
    select,
    summary,
    summary_markdown,
    write_summary,
)

N = 40  # seeds
LAST = 5  # last epoch
BASE = {"experiment": "e", "model": "mlp", "activation": "none", "protocol": "source", "data": "integers",
        "block": "none", "channels": 32, "width": 8}


def rows(kind: str, layer: str, metric: str, epoch: int, seeds, values, run_id: str = "r1") -> pd.DataFrame:
    seeds = np.asarray(seeds)
    return pd.DataFrame({**BASE, "run_id": run_id, "kind": kind, "seed": seeds, "epoch": epoch, "layer": layer,
                         "metric": metric, "value": np.asarray(values, dtype=float)})


def trained(metric: str, init, end, mid=None, layer: str = "bottleneck", run_id: str = "r1") -> list[pd.DataFrame]:
    """Epoch 0, an intermediate epoch (which must be ignored) and the last epoch of N seeds."""
    seeds = np.arange(len(init))
    mid = np.full(len(init), 1e6) if mid is None else mid
    return [rows("trained", layer, metric, epoch, seeds, values, run_id)
            for epoch, values in ((0, init), (2, mid), (LAST, end))]


rng = np.random.default_rng(123)
INIT = rng.normal(10.0, 1.0, N)
SHIFT = 0.5 + rng.normal(0.0, 0.2, N)  # a consistent positive training effect
NULL = np.arange(1000, dtype=float)  # null sample 0..999: percentiles known in closed form
# 'placed': final values at known positions in the null; 10 of 40 outside [24.975, 974.025].
PLACED_END = np.concatenate([np.full(5, 10.5), np.full(5, 990.5), np.linspace(100.5, 899.5, 30)])
SYMMETRIC = np.repeat(np.arange(1, N // 2 + 1), 2) * np.tile([1.0, -1.0], N // 2)  # changes ±1, ±2, …: no effect


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    parts = [
        *trained("shifted", INIT, INIT + SHIFT),
        *trained("flat", INIT, INIT),
        *trained("symmetric", INIT, INIT + SYMMETRIC),
        *trained("placed", np.full(N, 500.5), PLACED_END),
        *trained("min_pair_i", np.zeros(N), np.ones(N)),
        *trained("loss", INIT, INIT - 1.0, layer="model"),
        rows("null", "bottleneck", "shifted", 0, np.arange(NULL.size), NULL),
        rows("null", "bottleneck", "placed", 0, np.arange(NULL.size), NULL),
        rows("null", "bottleneck", "min_pair_i", 0, np.arange(NULL.size), NULL),
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def table(frame: pd.DataFrame) -> pd.DataFrame:
    return summary(frame).set_index("metric")


def test_one_row_per_group_and_index_metrics_left_out(table):
    assert sorted(table.index) == ["flat", "loss", "placed", "shifted", "symmetric"]
    assert (table["n_seeds"] == N).all()
    assert table.loc["loss", "layer"] == "model"


def test_means_use_epoch_zero_and_the_last_epoch(table):
    # The intermediate epoch holds 1e6: any use of it would wreck these.
    assert table.loc["shifted", "init_mean"] == pytest.approx(INIT.mean(), abs=1e-12)
    assert table.loc["shifted", "end_mean"] == pytest.approx((INIT + SHIFT).mean(), abs=1e-12)
    assert table.loc["shifted", "change_mean"] == pytest.approx(SHIFT.mean(), abs=1e-12)
    assert table.loc["loss", "change_mean"] == pytest.approx(-1.0, abs=1e-12)


def test_change_ci_contains_the_true_shift_and_has_the_expected_width(table):
    row = table.loc["shifted"]
    assert row["change_lo"] < 0.5 < row["change_hi"]
    assert row["change_lo"] < SHIFT.mean() < row["change_hi"]
    expected = 2 * 1.96 * SHIFT.std(ddof=1) / np.sqrt(N)  # normal-theory width, which the bootstrap approximates
    assert (row["change_hi"] - row["change_lo"]) == pytest.approx(expected, rel=0.2)
    # The init CI is about the spread of INIT (sd 1), five times wider than the paired change's.
    assert row["init_lo"] < INIT.mean() < row["init_hi"]
    assert (row["init_hi"] - row["init_lo"]) > 3 * (row["change_hi"] - row["change_lo"])


def test_wilcoxon_small_for_a_consistent_shift_large_or_nan_otherwise(table):
    assert table.loc["shifted", "wilcoxon_p"] < 1e-6
    assert table.loc["symmetric", "wilcoxon_p"] > 0.5
    assert np.isnan(table.loc["flat", "wilcoxon_p"])  # all changes zero: no test
    assert table.loc["flat", "change_lo"] == table.loc["flat", "change_hi"] == 0.0


def test_null_band_is_the_percentiles_of_the_null(table):
    lo, hi = np.percentile(NULL, [2.5, 97.5])
    assert table.loc["placed", "null_lo"] == pytest.approx(lo)
    assert table.loc["placed", "null_hi"] == pytest.approx(hi)
    assert table.loc["placed", "null_mean"] == pytest.approx(NULL.mean())
    assert table.loc["placed", "n_null"] == NULL.size


def test_null_percentiles_and_fraction_outside(table):
    reference = np.median([sps.percentileofscore(NULL, v, kind="mean") for v in PLACED_END])
    assert table.loc["placed", "end_null_pct"] == pytest.approx(reference)
    assert table.loc["placed", "end_null_pct"] == pytest.approx(100 * np.median(np.floor(PLACED_END) + 1) / 1000)
    assert table.loc["placed", "init_null_pct"] == pytest.approx(50.1)  # 500.5: 501 of 1000 samples below
    assert table.loc["placed", "frac_outside_null"] == pytest.approx(10 / N)
    assert (INIT + SHIFT).max() < table.loc["shifted", "null_lo"]  # every final value is below the band
    assert table.loc["shifted", "frac_outside_null"] == 1.0
    assert table.loc["shifted", "end_null_pct"] == pytest.approx(100 * np.median(np.floor(INIT + SHIFT) + 1) / 1000)


def test_a_value_equal_to_null_samples_counts_them_half():
    tied = pd.concat([*trained("m", np.full(3, 500.0), np.full(3, 500.0)),
                      rows("null", "bottleneck", "m", 0, np.arange(4), [100.0, 500.0, 500.0, 900.0])],
                     ignore_index=True)
    row = summary(tied).iloc[0]
    assert row["end_null_pct"] == pytest.approx(50.0)  # 1 below, 2 equal (count half) of 4
    assert row["end_null_pct"] == pytest.approx(sps.percentileofscore([100, 500, 500, 900], 500, kind="mean"))


def test_no_null_gives_nan_null_columns(table):
    loss = table.loc["loss"]
    assert loss["n_null"] == 0
    assert loss[["null_mean", "null_lo", "null_hi", "end_null_pct", "frac_outside_null"]].isna().all()


def test_bootstrap_is_vectorised_reference_equal_and_reproducible():
    x = rng.normal(size=(25, 2))
    lo, hi = bootstrap_mean_ci(x, n_boot=500, seed=7)
    idx = np.random.default_rng(7).integers(0, 25, size=(500, 25))
    looped = np.array([x[i].mean(axis=0) for i in idx])  # the slow definition
    # Float64 means of 25 values summed in two orders (a matrix product, a loop): each within gamma(25) of
    # sum|x| / 25 (Higham §3.1), so they differ by at most 2 gamma(25) max|x|; percentiles keep the bound.
    atol = 2 * 25 * 2.0**-53 / (1 - 25 * 2.0**-53) * np.abs(x).max()
    np.testing.assert_allclose(lo, np.percentile(looped, 2.5, axis=0), rtol=0, atol=atol)
    np.testing.assert_allclose(hi, np.percentile(looped, 97.5, axis=0), rtol=0, atol=atol)
    np.testing.assert_array_equal(bootstrap_mean_ci(x, n_boot=500, seed=7), bootstrap_mean_ci(x, n_boot=500, seed=7))
    assert not np.array_equal(bootstrap_mean_ci(x, n_boot=500, seed=7), bootstrap_mean_ci(x, n_boot=500, seed=8))
    assert np.isnan(bootstrap_mean_ci(x[:1])).all()  # one seed: no interval
    assert N_BOOT >= 1000


def test_one_seed_gives_no_ci_and_no_test():
    one = pd.concat(trained("m", [1.0], [2.0]), ignore_index=True)
    row = summary(one).iloc[0]
    assert row["n_seeds"] == 1 and row["change_mean"] == 1.0
    assert row[["init_lo", "init_hi", "change_lo", "change_hi", "wilcoxon_p"]].isna().all()


def test_pairs_stay_within_a_run_and_unfinished_seeds_drop_out():
    a = trained("m", np.zeros(4), np.ones(4), run_id="a")
    b = trained("m", np.zeros(3), np.full(3, 3.0), run_id="b")  # same seeds 0..2, another run
    diverged = rows("trained", "bottleneck", "m", 0, [9], [0.0], run_id="b")  # seed 9 never reached the end
    row = summary(pd.concat([*a, *b, diverged], ignore_index=True)).iloc[0]
    assert row["n_seeds"] == 7
    assert row["change_mean"] == pytest.approx((4 * 1 + 3 * 3) / 7)
    assert row["n_dropped"] == 1  # 8 (run, seed) replicates started at this width, 7 paired


def test_seeds_without_a_value_are_counted_as_dropped():
    """Four seeds ran (their loss is logged); the metric is NaN for one at the end (e.g. its units all died)."""
    end = np.array([1.0, 2.0, np.nan, 4.0])
    parts = [*trained("act_corr", np.zeros(4), end), *trained("loss", np.ones(4), np.ones(4), layer="model")]
    table = summary(pd.concat(parts, ignore_index=True)).set_index("metric")
    assert table.loc["act_corr", "n_seeds"] == 3 and table.loc["act_corr", "n_dropped"] == 1
    assert table.loc["loss", "n_seeds"] == 4 and table.loc["loss", "n_dropped"] == 0


def test_select_keeps_the_requested_order(table):
    full = table.reset_index()
    view = select(full, layer="bottleneck", metrics=["symmetric", "shifted"], widths=[8])
    assert view["metric"].tolist() == ["symmetric", "shifted"]
    assert select(full, widths=[16]).empty


def test_write_summary_csv_and_markdown(frame, tmp_path):
    paths = write_summary(frame, tmp_path / "tables")
    assert [p.name for p in paths] == ["summary.csv", "summary.md"]
    back = pd.read_csv(paths[0])
    assert len(back) == 5 and set(GROUP) <= set(back.columns)
    assert back.set_index("metric").loc["shifted", "change_mean"] == pytest.approx(SHIFT.mean())
    md = paths[1].read_text()
    assert "| e | mlp | none | source | integers | none | 32 | 8 | bottleneck | shifted | 40 |" in md
    assert "e-" in summary_markdown(summary(frame)).split("shifted")[1].split("\n")[0]  # p in scientific notation
    assert write_summary(frame.iloc[:0], tmp_path / "empty") == []
    assert not (tmp_path / "empty").exists()


def test_at_picks_each_runs_checkpoint_closest_to_the_fraction():
    """Checkpoints 0, 20, …, 100; the loss is logged every epoch and a sparse metric only at 0 and 100."""
    epochs = [0, 20, 40, 60, 80, 100]
    parts = [rows("trained", "bottleneck", "m", ep, np.arange(3), np.full(3, float(ep))) for ep in epochs]
    parts += [rows("trained", "model", "loss", ep, np.arange(3), np.full(3, float(ep))) for ep in range(101)]
    parts += [rows("trained", "bottleneck", "sparse", ep, np.arange(3), np.full(3, float(ep))) for ep in (0, 100)]
    df = pd.concat(parts, ignore_index=True)

    def end(at, metric="m"):
        pairs = paired_values(df, at=at)
        values = pairs.loc[pairs["metric"] == metric, "end"].unique()
        assert values.size == 1
        return values[0]

    assert end(None) == end(1.0) == 100.0
    assert end(0.5) == 60.0   # 50: a tie between 40 and 60 goes to the later checkpoint
    assert end(0.55) == 60.0 and end(0.45) == 40.0
    assert end(0.01) == 20.0  # never epoch 0
    assert end(0.5, "loss") == 50.0  # the loss has a checkpoint at every epoch
    assert end(0.5, "sparse") == 100.0  # a metric's own checkpoints: the sparse one only has 100
    assert (paired_values(df, at=0.5)["init"] == 0.0).all()
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="at must be"):
            paired_values(df, at=bad)
