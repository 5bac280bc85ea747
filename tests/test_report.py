"""The generated report: rebuilt byte for byte from the committed tables, every number from a table, every
direction word computed from the numbers its sentence cites.

Apart from the two checks against the committed tables (``results/``), the tests build their tables from a small
synthetic tidy frame run through the same code as ``analysis.figures`` (``stats.summary``,
``hypothesis.trend_table``/``effects_table``, ``calibration.calibration_table``), so they test the report on tables
in the current format whatever the committed ones hold."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import report as R
from analysis.calibration import calibration_table
from analysis.hypothesis import effects_table, trend_table
from analysis.stats import summary
from experiments.config import REPO_ROOT
from tests.test_hypothesis import null as _null
from tests.test_hypothesis import trained

RESULTS = REPO_ROOT / "results"
TREND_LINE = re.compile(
    r"^- (?:Training's change|The final value) of .*?\(`(?P<metric>[a-z0-9_@.]+)`, layer `(?P<layer>[a-z]+)`[^)]*\) "
    r"(?P<words>[^:]*?): slope (?P<slope>\S+) .*?, bootstrap p = (?P<p>\S+), omnibus p = (?P<omni>\S+); "
    r"(?P<label>Holm|BH q) = (?P<adj>\S+) \(trend\), (?P<adj_omni>\S+) \(omnibus\);", re.M)
WIDTHS = [4, 8, 16, 32, 64]
SEEDS = 8
NULL = np.tile([-1.0, 1.0], 10)


def null(metric: str, values=NULL, **base) -> pd.DataFrame:
    out = _null(metric, WIDTHS, values)
    for k, v in base.items():
        out[k] = v
    return out


def synthetic_frame() -> pd.DataFrame:
    """Three sweeps whose headline rows cover every profile: rising, falling, non-monotone, no evidence, no test;
    a degenerate-at-initialisation family metric (tested on its final value), the source's metric, functional
    shares at the default threshold and the task."""
    rng = np.random.default_rng(3)
    x = np.log2(WIDTHS)[:, None] - 2  # 0..4
    shape = (len(WIDTHS), SEEDS)
    init = rng.normal(size=shape)
    zeros = np.zeros(shape)

    def noise(sd: float = 1.0) -> np.ndarray:
        return sd * rng.normal(size=shape)

    hump = np.array([0.0, 1.0, 2.0, 1.0, 0.0])[:, None]
    mlp = {"experiment": "mlp_sweep", "model": "mlp", "activation": "none"}
    cls = {"experiment": "mnist1d_mlp_sweep", "model": "mlp_classifier", "activation": "relu", "data": "mnist1d"}
    conv = {"experiment": "conv_sweep", "model": "conv", "activation": "relu", "data": "digits"}
    t = R.DEFAULT_THRESHOLD
    parts = [
        trained("mean_nn_abs_cos", WIDTHS, SEEDS, init, init + 2 * x + noise(0.3), **mlp),
        null("mean_nn_abs_cos", **mlp),
        trained("act_eff_rank_norm", WIDTHS, SEEDS, init, init + noise(), **mlp),
        null("act_eff_rank_norm", **mlp),
        trained("abl_eff_frac", WIDTHS, SEEDS, init, init + hump + noise(0.05), **mlp),
        trained("min_pair_l1", WIDTHS, SEEDS, init - 0.1 * x, init + x + noise(0.3), **mlp),
        trained("anchor_prunable_frac", WIDTHS, SEEDS, zeros, 0.5 - 0.1 * x + noise(0.05), **mlp),
        trained(f"prunable_frac@{t:g}", WIDTHS, SEEDS, init, init + 0.1, **mlp),
        trained(f"redundant_frac@{t:g}", WIDTHS, SEEDS, init, init + 0.2, **mlp),
        trained("eval_loss", WIDTHS, SEEDS, 1 + zeros, 0.1 + 0.01 * np.abs(noise()), layer="model", **mlp),
        trained("mean_nn_abs_cos", WIDTHS, SEEDS, init, init - x + noise(0.3), **cls),
        trained("act_eff_rank_norm", WIDTHS, SEEDS, init, init - x + noise(0.3), **cls),
        trained("abl_eff_frac", WIDTHS, SEEDS, init, init + noise(), **cls),
        trained("test_accuracy", WIDTHS, SEEDS, 0.1 + zeros, 0.8 + 0.01 * noise(), layer="model", **cls),
        trained("mean_nn_abs_cos", WIDTHS, SEEDS, init, init + noise(), **conv),
        trained("act_eff_rank_norm", WIDTHS, SEEDS, np.ones(shape), 1 + 1e-12 * x + zeros, **conv),
        trained("abl_eff_frac", WIDTHS, SEEDS, init, init + x + noise(0.3), **conv),
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A results root with the tables and the figure directory ``analysis.figures`` would write, from
    :func:`synthetic_frame`."""
    root = tmp_path_factory.mktemp("results")
    tables, figures = root / "tables", root / "figures"
    tables.mkdir()
    figures.mkdir()
    frame = synthetic_frame()
    trend = trend_table(frame, n_perm=999, n_boot=200)
    trend.to_csv(tables / "trend.csv", index=False)
    summary(frame, n_boot=200).to_csv(tables / "summary.csv", index=False)
    effects_table(frame, n_boot=200).to_csv(tables / "effects.csv", index=False)
    calibration_table(trend, n_sim=40, n_draws=99).to_csv(tables / "calibration.csv", index=False)
    pd.DataFrame({"model": ["mlp"], "baseline": ["MLP"], "width": [100], "n_seeds": [3], "epochs": [10],
                  "steps": [1000], "published_pct": [68.0], "test_accuracy_mean_pct": [67.5],
                  "test_accuracy_lo_pct": [66.0], "test_accuracy_hi_pct": [69.0], "diff_pct": [-0.5]}).to_csv(
        tables / "mnist1d_baselines.csv", index=False)
    return root


def _copy(src: Path, tmp_path: Path) -> Path:
    root = tmp_path / "results"
    shutil.copytree(src / "tables", root / "tables")
    shutil.copytree(src / "figures", root / "figures", ignore=shutil.ignore_patterns("*.pdf", "*.png"))
    return root


def _run(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.report", "--results", str(root), "--readme", ""],
                          cwd=REPO_ROOT, capture_output=True, text=True)


# ---------------------------------------------------------------------------------------------------------
# The committed report (regenerated from the committed tables)


def test_the_committed_report_is_rebuilt_byte_for_byte():
    built = R.build_report(RESULTS / "tables", RESULTS / "figures")
    assert built == (RESULTS / "REPORT.md").read_text()


def test_every_link_inside_the_report_has_its_anchor():
    """The per-family sections link their figures in the appendix by file name; each target must exist (an <a id>)
    and carry a heading that says what the figure shows, not its file name."""
    text = (RESULTS / "REPORT.md").read_text()
    targets = re.findall(r"\]\(#([^)]+)\)", text)
    assert targets
    for name in targets:
        assert f'<a id="{name}"></a>' in text, name
        heading = text.split(f'<a id="{name}"></a>', 1)[1].lstrip().splitlines()[0]
        assert heading.startswith("### Figure ") and name not in heading, (name, heading)


def test_the_readme_blocks_are_the_generated_ones():
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = R.readme_blocks(RESULTS / "tables")
    assert blocks and R.fill_blocks(readme, blocks) == readme
    for name in blocks:
        assert f"<!-- report:{name} -->" in readme and f"<!-- /report:{name} -->" in readme


@pytest.mark.parametrize("name", R.REQUIRED)
def test_required_tables_are_committed(name):
    assert (RESULTS / "tables" / f"{name}.csv").exists()


# ---------------------------------------------------------------------------------------------------------
# Words and verdicts


def test_direction_words_follow_the_profile():
    assert R.trend_words("rising", 0.01) == "rises with width"
    assert R.trend_words("falling", R.ALPHA) == "falls with width"  # the cut-off is p <= alpha
    assert R.trend_words("non-monotone", 0.01).startswith("changes with width, not monotonically")
    assert R.trend_words("no evidence", 0.5) == "shows no evidence of a width effect"
    assert R.trend_words("no test", float("nan")).startswith("has no test")
    for profile, p in (("rising", 0.2), ("falling", float("nan")), ("up", 0.01)):
        with pytest.raises(ValueError):
            R.trend_words(profile, p)  # an effect the adjusted p does not support, or an unknown profile
    # |cos| up = more redundant; effective rank up = less redundant.
    assert R.redundancy_words("mean_nn_abs_cos", "rising").startswith("wider")
    assert R.redundancy_words("act_eff_rank_norm", "rising").startswith("narrower")
    assert R.redundancy_words("anchor_prunable_frac", "falling", "final") == (
        "narrower layers end with more redundancy than wide ones")
    assert R.redundancy_words("act_eff_rank_norm", "no evidence").startswith("no evidence")
    assert "not monotone" in R.redundancy_words("abl_eff_frac", "non-monotone")
    assert R.metric_name(f"prunable_frac@{R.DEFAULT_THRESHOLD:g}").endswith("by less than 1%")


def test_the_ledger_rule():
    # (supporting, opposing, tested)
    cases = {(2, 0, 2): "holds", (1, 0, 3): "holds conditionally", (1, 1, 3): "mixed", (2, 1, 3): "mixed",
             (0, 1, 2): "does not hold as stated", (0, 0, 2): "does not hold as stated", (0, 0, 0): "not tested"}
    assert {k: R.ledger_verdict(*k) for k in cases} == cases
    assert set(cases.values()) <= set(R.VERDICTS)


# ---------------------------------------------------------------------------------------------------------
# The report of the synthetic tables


def test_every_trend_sentence_of_the_report_agrees_with_its_own_numbers(synthetic):
    text = R.build_report(synthetic / "tables", synthetic / "figures")
    trend = pd.read_csv(synthetic / "tables" / "trend.csv")
    found = list(TREND_LINE.finditer(text))
    assert len(found) == int(trend["headline"].sum()) == 9
    words = {m["words"] for m in found}
    assert {"rises with width", "falls with width", "shows no evidence of a width effect"} <= words
    assert any(w.startswith("changes with width, not monotonically") for w in words)
    assert any(w.startswith("has no test") for w in words)
    for m in found:
        adj = [float(m[k]) if m[k] != "n/a" else float("nan") for k in ("adj", "adj_omni")]
        assert m["label"] == "Holm"
        if m["words"].startswith("has no test"):
            assert np.isnan(adj).all(), m.group(0)
            continue
        assert (min(adj) <= R.ALPHA) == (m["words"] != "shows no evidence of a width effect"), m.group(0)
        if adj[0] <= R.ALPHA and m["words"] in ("rises with width", "falls with width"):  # a significant trend
            assert (float(m["slope"]) > 0) == (m["words"] == "rises with width"), m.group(0)
    # Old vocabulary is gone; the config file is cited.
    for gone in ("permutation p", "Jonckheere", "SPEC §", "functional.samples", "`prunable_frac`",
                 "`redundant_frac`"):
        assert gone not in text
    assert R.CONFIG_PATH == "conf/analysis/hypothesis.yaml" and R.CONFIG_PATH in text
    assert "effect vs the untrained null's SD" in text
    assert f"prunable_frac@{R.DEFAULT_THRESHOLD:g}" in text and "abl_eff_frac" in text


def test_a_verdict_on_pairs_of_widths_alone_says_so():
    """The shape of the digits autoencoder's |cos| change (results/tables/effects.csv): high and noisy at the two
    narrowest widths, a dip at w = 8, a rise to a plateau. The fall from w = 2 is too noisy to count; the rise from
    w = 8 is clear, so the profile is "rising" (wider gains more) while the slope over all widths is negative and
    not significant. The sentence, the answer table and the counts must say the verdict rests on pairs alone."""
    widths = 2 ** np.arange(1, 8)
    means = np.array([0.085, 0.038, -0.039, -0.016, 0.027, 0.038, 0.037])[:, None]
    # The real spreads, scaled so that with this one row's Holm cut-off (2 tests, not the report's 70) the falls
    # from w = 2 and 4 still cannot count: the statistic of a pair is bounded by √20 and shrinks with its noise.
    sds = np.array([0.4, 0.2, 0.01, 0.01, 0.005, 0.005, 0.005])[:, None]
    rng = np.random.default_rng(5)
    init = rng.normal(size=(7, 20))
    frame = trained("mean_nn_abs_cos", widths, 20, init, init + means + sds * rng.normal(size=(7, 20)),
                    experiment="autoencoder_sweep", model="autoencoder", activation="relu", data="digits")
    row = trend_table(frame, n_perm=999, n_boot=200).iloc[0]
    # OLS slope of these means over log2 w: Σ(x − x̄)(y − ȳ)/Σ(x − x̄)² = −0.078/28 = −0.0028, with the noise of the
    # two narrowest means (SE 0.09 and 0.045 over 20 seeds, weights 3/28 and 2/28) an SE of ~0.01: not significant.
    assert row["headline"] and row["profile"] == "rising" and row["n_falling_pairs"] == 0, row.to_dict()
    assert row["holm"] > R.ALPHA >= row["omni_holm"] and row["slope_lo"] < 0 < row["slope_hi"]
    assert R.rests_on_pairs(row)
    sentence = R.trend_sentence(row)
    assert (f"rises between some widths ({int(row['n_rising_pairs'])} pairs of widths differ significantly, all "
            "upward; the slope over all widths is not significant after adjustment)") in sentence
    assert sentence.endswith("So: wider layers gain more redundancy in training than narrow ones.")
    table = R.answer_section(pd.DataFrame([row]))
    assert "| wider gain more†: " in table and "†: the verdict rests on pairs of widths" in table
    counts = R.report_counts(pd.DataFrame([row]))
    assert (counts.wider, counts.on_pairs) == (1, 1)
    # A planted linear trend does not rest on pairs: its slope is significant.
    x = np.log2(widths)[:, None]
    straight = trained("mean_nn_abs_cos", widths, 20, init, init + 0.01 * x + 0.005 * rng.normal(size=(7, 20)))
    row = trend_table(straight, n_perm=999, n_boot=200).iloc[0]
    assert row["profile"] == "rising" and not R.rests_on_pairs(row)
    assert "between some widths" not in R.trend_sentence(row)


def test_counts_are_computed_once_and_agree(synthetic):
    t = R.load_tables(synthetic / "tables")
    c = t.counts
    trend = t.trend
    head = trend[trend["headline"]]
    assert c.headline_rows == len(head) == 9 and c.configs == 3 and c.models == 3
    assert c.headline_tests == int(head["trend_p"].notna().sum() + head["omni_p"].notna().sum()) == 16
    assert c.wider + c.narrower + c.non_monotone + c.no_evidence + c.untested == c.headline_rows
    assert (c.untested, c.non_monotone) == (1, 1)
    text = R.build_report(synthetic / "tables", synthetic / "figures", t)
    assert f"Of the {c.headline_tested} tested headline comparisons ({c.headline_tests} tests" in text
    assert f"{c.family_rows} rows, {c.family_tests} defined tests" in text
    assert R.readme_blocks(synthetic / "tables", t=t)["headline"].startswith(R._headline_summary(c))


def test_the_ledger_lists_the_tests_behind_each_verdict(synthetic):
    text = R.build_report(synthetic / "tables", synthetic / "figures")
    ledger = text.split("## Claims ledger")[1].split("## Limitations")[0]
    rows = [line for line in ledger.splitlines() if "the study's hypothesis" in line]
    assert len(rows) == 3
    verdicts = [line.split(" | ")[3] for line in rows]
    assert set(verdicts) <= set(R.VERDICTS)
    for line in rows:
        for metric in R.HEADLINE_METRICS:
            assert f"`{metric}` (`bottleneck`)" in line  # every headline test is listed
    # mlp_sweep: |cos| rises (wider gains more: supports), the others non-monotone / no evidence.
    assert verdicts[next(i for i, r in enumerate(rows) if "`mlp_sweep`" in r)] == "holds conditionally"
    # mnist1d: |cos| falls (narrower gains more: opposes), effective rank falls (wider gains more: supports).
    assert verdicts[next(i for i, r in enumerate(rows) if "`mnist1d_mlp_sweep`" in r)] == "mixed"
    assert "closest-pair" in ledger  # the source's claim, from min_pair_l1


def test_the_calibration_section_only_with_its_table(synthetic, tmp_path):
    text = R.build_report(synthetic / "tables", synthetic / "figures")
    assert "## Calibration of the width tests" in text and "binomial band" in text
    root = _copy(synthetic, tmp_path)
    (root / "tables" / "calibration.csv").unlink()
    (root / "tables" / "effects.csv").unlink()
    text = R.build_report(root / "tables", root / "figures")
    assert "## Calibration" not in text and "effects.md" not in text


def test_a_changed_table_value_changes_the_report_and_its_words(synthetic, tmp_path):
    root = _copy(synthetic, tmp_path)
    before = R.build_report(root / "tables", root / "figures")
    trend = pd.read_csv(root / "tables" / "trend.csv")
    i = trend.index[trend["headline"] & trend["profile"].eq("rising") & (trend["holm"] <= R.ALPHA)][0]
    # Mirror the slope and its CI: the profile "rising" now contradicts a significant negative slope: exit 2.
    trend.loc[i, ["slope", "slope_lo", "slope_hi"]] = -trend.loc[i, ["slope", "slope_hi", "slope_lo"]].to_numpy()
    trend.to_csv(root / "tables" / "trend.csv", index=False)
    proc = _run(root)
    assert proc.returncode == 2 and "trend.csv" in proc.stderr and "profile" in proc.stderr
    # The same evidence, the opposite direction: the words follow.
    trend.loc[i, "profile"] = "falling"
    trend.to_csv(root / "tables" / "trend.csv", index=False)
    after = R.build_report(root / "tables", root / "figures")
    assert after != before
    metric = trend.loc[i, "metric"]
    shown = [m["words"] for m in TREND_LINE.finditer(after) if m["metric"] == metric
             and np.isclose(float(m["slope"]), float(trend.loc[i, "slope"]), rtol=1e-2)]
    assert shown == ["falls with width"]
    # A number changes too: the baselines' mean goes straight into the report.
    base = pd.read_csv(root / "tables" / "mnist1d_baselines.csv")
    base.loc[0, "test_accuracy_mean_pct"] = 12.345
    base.to_csv(root / "tables" / "mnist1d_baselines.csv", index=False)
    assert "12.3 [" in R.build_report(root / "tables", root / "figures")


# ---------------------------------------------------------------------------------------------------------
# Partial or missing tables: one line naming the table and exit 2, or a valid report; never a traceback


def test_a_missing_table_is_one_line_naming_it_and_exit_2(synthetic, tmp_path):
    root = _copy(synthetic, tmp_path)
    (root / "tables" / "trend.csv").unlink()
    proc = _run(root)
    assert proc.returncode == 2
    assert "trend.csv" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: ")
    assert not (root / "REPORT.md").exists()


def _break(tables: Path, how: str) -> str:
    """Damage one table as ``how`` says; returns the table's file name."""
    trend = pd.read_csv(tables / "trend.csv")
    if how == "nan replicates":
        trend["n_replicates"] = np.nan
    elif how == "nan everywhere":
        for col in ("n_replicates", "n_total", "n_dropped", "narrow", "wide", "slope", "gap_narrow", "n_draws"):
            trend[col] = np.nan
    elif how == "text in a number":
        trend["n_total"] = trend["n_total"].astype(object)
        trend.loc[0, "n_total"] = "many"
    elif how == "one row":
        trend = trend[trend["headline"]].head(1)
    elif how == "no rows":
        trend = trend.head(0)
    elif how == "no profile":
        trend = trend.drop(columns="profile")
    elif how == "old format":
        trend = trend.drop(columns=["omni_p", "profile", "gap_narrow"]).assign(jt_p=0.5)
    elif how == "empty file":
        (tables / "trend.csv").write_text("")
        return "trend.csv"
    elif how == "summary without rows":
        pd.read_csv(tables / "summary.csv").head(0).to_csv(tables / "summary.csv", index=False)
        return "summary.csv"
    elif how == "summary one row":
        pd.read_csv(tables / "summary.csv").head(1).to_csv(tables / "summary.csv", index=False)
        return ""
    elif how == "bad calibration":
        pd.read_csv(tables / "calibration.csv").drop(columns="size").to_csv(tables / "calibration.csv", index=False)
        return "calibration.csv"
    elif how == "empty effects":
        pd.read_csv(tables / "effects.csv").head(0).to_csv(tables / "effects.csv", index=False)
        return ""
    trend.to_csv(tables / "trend.csv", index=False)
    return "trend.csv" if how in ("no rows", "no profile", "old format") else ""


@pytest.mark.parametrize("how", ["nan replicates", "nan everywhere", "text in a number", "one row", "no rows",
                                 "no profile", "old format", "empty file", "summary without rows",
                                 "summary one row", "bad calibration", "empty effects"])
def test_partial_tables_give_exit_2_or_a_valid_report_never_a_traceback(synthetic, tmp_path, how):
    root = _copy(synthetic, tmp_path)
    named = _break(root / "tables", how)
    proc = _run(root)
    assert "Traceback" not in proc.stderr, proc.stderr
    if named:  # an error naming the table
        assert proc.returncode == 2, proc.stdout
        assert proc.stderr.startswith("error: ") and named in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not (root / "REPORT.md").exists()
    else:  # a valid report
        assert proc.returncode == 0, proc.stderr
        text = (root / "REPORT.md").read_text()
        assert text.startswith("# Do narrow layers") and "## Claims ledger" in text
