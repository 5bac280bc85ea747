"""The generated report: rebuilt byte for byte from the committed tables, every number from a table, every
direction word computed from the numbers its sentence cites."""

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
from experiments.config import REPO_ROOT

RESULTS = REPO_ROOT / "results"
TREND_LINE = re.compile(r"^- Training's change of .*?\(`(?P<metric>[a-z0-9_]+)`, layer `[a-z]+`\) (?P<words>.*?): "
                        r"slope (?P<slope>\S+) .*?(?:Holm|BH q) = (?P<p>\S+?);", re.M)


def test_the_committed_report_is_rebuilt_byte_for_byte():
    built = R.build_report(RESULTS / "tables", RESULTS / "figures")
    assert built == (RESULTS / "REPORT.md").read_text()


def test_the_readme_blocks_are_the_generated_ones():
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = R.readme_blocks(RESULTS / "tables")
    assert blocks and R.fill_blocks(readme, blocks) == readme
    for name in blocks:
        assert f"<!-- report:{name} -->" in readme and f"<!-- /report:{name} -->" in readme


def test_direction_words_follow_the_numbers():
    assert R.trend_words(0.1, 0.01) == "rises with width"
    assert R.trend_words(-0.1, 0.01) == "falls with width"
    assert R.trend_words(-0.1, R.ALPHA) == "shows no evidence of a width trend"  # alpha itself is not below alpha
    assert R.trend_words(0.1, float("nan")).startswith("has no test")
    # |cos| up = more redundant; effective rank up = less redundant.
    assert R.redundancy_words("mean_nn_abs_cos", 0.1, 0.01).startswith("wider")
    assert R.redundancy_words("act_eff_rank_norm", 0.1, 0.01).startswith("narrower")
    assert R.redundancy_words("act_eff_rank_norm", 0.1, 0.5).startswith("no evidence")
    assert [R.ledger_verdict(*a) for a in ((2, 0, 2), (1, 1, 2), (0, 1, 2), (0, 0, 2), (0, 0, 0))] == [
        "holds", "holds conditionally", "does not hold as stated", "does not hold as stated", "not tested"]


def test_every_trend_sentence_of_the_report_agrees_with_its_own_numbers():
    text = (RESULTS / "REPORT.md").read_text()
    found = list(TREND_LINE.finditer(text))
    assert len(found) >= 10
    for m in found:
        p = float(m["p"]) if m["p"] != "n/a" else float("nan")
        assert m["words"] == R.trend_words(float(m["slope"]), p), m.group(0)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    shutil.copytree(RESULTS / "tables", root / "tables")
    shutil.copytree(RESULTS / "figures", root / "figures", ignore=shutil.ignore_patterns("*.pdf", "*.png"))
    return root


def test_a_changed_table_value_changes_the_report_and_its_words(tmp_path):
    root = _copy(tmp_path)
    before = R.build_report(root / "tables", root / "figures")
    trend = pd.read_csv(root / "tables" / "trend.csv")
    head = trend[trend["headline"].astype(str).str.lower().eq("true") & (trend["holm"] < R.ALPHA)]
    i = head.index[0]
    # Mirror the slope and its CI: the same evidence, the opposite direction.
    trend.loc[i, ["slope", "slope_lo", "slope_hi"]] = -trend.loc[i, ["slope", "slope_hi", "slope_lo"]].to_numpy()
    trend.to_csv(root / "tables" / "trend.csv", index=False)
    after = R.build_report(root / "tables", root / "figures")
    assert after != before
    old_words = R.trend_words(float(head.loc[i, "slope"]), float(head.loc[i, "holm"]))
    new_words = R.trend_words(-float(head.loc[i, "slope"]), float(head.loc[i, "holm"]))
    assert {old_words, new_words} == {"rises with width", "falls with width"}
    metric = head.loc[i, "metric"]
    shown = [m["words"] for m in TREND_LINE.finditer(after) if m["metric"] == metric
             and np.isclose(float(m["slope"]), -float(head.loc[i, "slope"]), rtol=1e-2)]
    assert new_words in shown
    # A number changes too: the baselines' mean goes straight into the report.
    base = pd.read_csv(root / "tables" / "mnist1d_baselines.csv")
    base.loc[0, "test_accuracy_mean_pct"] = 12.345
    base.to_csv(root / "tables" / "mnist1d_baselines.csv", index=False)
    assert "12.3 [" in R.build_report(root / "tables", root / "figures")


def test_a_missing_table_is_one_line_naming_it_and_exit_2(tmp_path):
    root = _copy(tmp_path)
    (root / "tables" / "trend.csv").unlink()
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--results", str(root), "--readme", ""],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "trend.csv" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (root / "REPORT.md").exists()


@pytest.mark.parametrize("name", R.REQUIRED)
def test_required_tables_are_committed(name):
    assert (RESULTS / "tables" / f"{name}.csv").exists()
