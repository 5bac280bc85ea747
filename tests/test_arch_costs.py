"""The architecture cost table and the claims ledger: every count against a formula or a published value.

Block formulas are written here independently of ``analysis.architectures``: a k x k conv from c to f channels
has k*k*c*f weights (+ f biases), a BatchNorm over c channels 2c affine parameters, and at stride 1 with "same"
padding one multiply-accumulate per weight per output position. Whole networks are checked against the
parameter counts and GFLOPS torchvision publishes with each model's weights (the ``num_params`` and ``GFLOPS``
entries of https://pytorch.org/vision/stable/models.html, e.g. .../generated/torchvision.models.resnet50.html);
its GFLOPS are multiply-accumulates in units of 1e9, rounded to two decimals.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import architectures as A
from analysis.arch_costs import (
    ROWS,
    VERDICTS,
    check_ledger,
    claims,
    cost_table,
    densenet_b_break_even,
    densenet_b_saves,
    densenet_b_verdict,
    macs,
    over_range,
    parameters,
    qualitative,
    receptive_field,
    verdict,
    write_tables,
)

# torchvision's published (num_params, GFLOPS) at 224 x 224.
PUBLISHED = {
    "resnet18": (11_689_512, 1.81),
    "resnet34": (21_797_672, 3.66),
    "resnet50": (25_557_032, 4.09),
    "vgg16": (138_357_544, 15.47),
    "densenet121": (7_978_856, 2.83),
    "squeezenet1_0": (1_248_424, 0.82),
    "squeezenet1_1": (1_235_496, 0.35),
    "alexnet": (61_100_840, 0.71),
}


@pytest.fixture(scope="module")
def costs() -> pd.DataFrame:
    return cost_table().set_index("key")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_networks_match_torchvision_published_counts(costs, name):
    params, gflops = PUBLISHED[name]
    assert costs.loc[name, "params"] == params
    # Two decimals: the published value is within half a unit of the last digit of ours.
    assert abs(costs.loc[name, "MACs"] / 1e9 - gflops) <= 0.005 + 1e-9


def test_resnet50_layouts_differ_only_in_cost(costs):
    """The paper puts the stride on the first 1x1, torchvision on the 3x3: same parameters, fewer MACs."""
    assert costs.loc["resnet50_paper", "params"] == costs.loc["resnet50", "params"]
    assert costs.loc["resnet50_paper", "MACs"] < costs.loc["resnet50", "MACs"]


HW56, HW28 = 56 * 56, 28 * 28


@pytest.mark.parametrize(("key", "params", "macs_"), [
    ("resnet_basic_64", 2 * 9 * 64 * 64, 2 * 9 * 64 * 64 * HW56),
    ("resnet_bottleneck_256", 256 * 64 + 9 * 64 * 64 + 64 * 256, (256 * 64 + 9 * 64 * 64 + 64 * 256) * HW56),
    ("resnet_standard_256", 9 * 256 * 64 + 9 * 64 * 64, (9 * 256 * 64 + 9 * 64 * 64) * HW56),
    ("conv1x1_256", 256 * 256, 256 * 256 * HW28),
    ("conv3x3_256", 9 * 256 * 256, 9 * 256 * 256 * HW28),
    ("inception_naive", (256 * 128 + 128) + (9 * 256 * 192 + 192) + (25 * 256 * 96 + 96),
     (256 * 128 + 9 * 256 * 192 + 25 * 256 * 96) * HW28),
    ("inception_reduced", (256 * 128 + 128) + (256 * 64 + 64) + (9 * 64 * 192 + 192) + (256 * 64 + 64)
     + (25 * 64 * 96 + 96) + (256 * 64 + 64),
     (256 * 128 + 3 * 256 * 64 + 9 * 64 * 192 + 25 * 64 * 96) * HW28),
    ("stack_3x3_x3_256", 27 * 256 * 256, 27 * 256 * 256 * HW28),
    ("conv7x7_256", 49 * 256 * 256, 49 * 256 * 256 * HW28),
    ("densenet_plain_layer", 2 * 256 + 9 * 256 * 32, 9 * 256 * 32 * HW28),
    ("densenet_b_layer", 2 * 256 + 256 * 128 + 2 * 128 + 9 * 128 * 32, (256 * 128 + 9 * 128 * 32) * HW28),
    ("densenet_transition_1", 2 * 256 + 256 * 256, 256 * 256 * HW28),
    ("densenet_transition_05", 2 * 256 + 256 * 128, 256 * 128 * HW28),
    ("fire_2", 16 * (96 + 1) + 64 * (16 + 1) + 64 * (9 * 16 + 1), (96 * 16 + 16 * 64 + 9 * 16 * 64) * 55 * 55),
    # Krizhevsky et al. 2012 at 227 x 227: conv1 to 55 x 55, pools to 27 and 13, then 6; conv2, 4, 5 in 2 groups.
    ("alexnet_original",
     (121 * 3 * 96 + 96) + (25 * 48 * 256 + 256) + (9 * 256 * 384 + 384) + (9 * 192 * 384 + 384)
     + (9 * 192 * 256 + 256) + (9216 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000),
     121 * 3 * 96 * 55 * 55 + 25 * 48 * 256 * 27 * 27 + (9 * 256 * 384 + 9 * 192 * 384 + 9 * 192 * 256) * 13 * 13
     + 9216 * 4096 + 4096 * 4096 + 4096 * 1000),
])
def test_blocks_equal_closed_forms(costs, key, params, macs_):
    assert costs.loc[key, "params"] == params
    assert costs.loc[key, "MACs"] == macs_


def test_every_row_is_counted_once_and_macs_halve_the_flop_counter():
    assert len({r.key for r in ROWS}) == len(ROWS)
    # A Linear layer: FlopCounterMode counts 2 * in * out FLOPs, one MAC per weight.
    from torch import nn

    assert macs(nn.Linear(7, 5), (7,)) == 35
    assert parameters(nn.Linear(7, 5)) == 40


def test_receptive_fields():
    from torch import nn

    assert receptive_field(nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)]), 1) == 7
    assert receptive_field(nn.Conv2d(1, 1, 5, padding=2), 1) == 5


def _plain(c: int, k: int) -> int:
    """BN over c (2c) + 3x3 conv c -> k without bias (9ck)."""
    return 2 * c + 9 * c * k


def _b(c: int, k: int) -> int:
    """BN over c (2c) + 1x1 conv c -> 4k (4kc) + BN over 4k (8k) + 3x3 conv 4k -> k (36k^2), no biases."""
    return 2 * c + 4 * k * c + 8 * k + 36 * k * k


# By hand: _b < _plain  <=>  4kc + 8k + 36k^2 < 9kc  <=>  c > (8 + 36k) / 5. At k = 32: c > 1160 / 5 = 232, with
# equality at c = 232 (both 67,280). Without the 4k-channel BN (8k) it would be c > 36k / 5 = 230.4.
HAND_BREAK_EVEN = {12: 88, 24: 174, 32: 232}  # floor((8 + 36k) / 5): 440/5, 872/5 = 174.4, 1160/5


@pytest.mark.parametrize("k", sorted(HAND_BREAK_EVEN))
def test_densenet_break_even_is_the_hand_derived_width(k):
    c = HAND_BREAK_EVEN[k]
    assert c == math.floor((8 + 36 * k) / 5)
    assert densenet_b_break_even(k) == c
    # The closed forms are the modules' counts on either side.
    for w in (c - 1, c, c + 1):
        assert parameters(A.DenseLayerB(w, k)) == _b(w, k)
        assert parameters(A.PlainDenseLayer(w, k)) == _plain(w, k)


def test_densenet_verdict_flips_at_the_break_even():
    c = HAND_BREAK_EVEN[32]
    assert _b(c, 32) == _plain(c, 32) == 67_280  # break-even: equal, so no saving yet
    assert [densenet_b_saves(w) for w in (c - 1, c, c + 1, c + 2)] == [False, False, True, True]
    assert densenet_b_verdict(c - 1) == densenet_b_verdict(c) == "does not hold as stated"
    assert densenet_b_verdict(c + 1) == "holds"
    # k = 24: the break-even is not an integer (174.4); 174 is still more, 175 already fewer.
    assert (densenet_b_verdict(174, 24), densenet_b_verdict(175, 24)) == ("does not hold as stated", "holds")


@pytest.mark.parametrize(("computed", "claimed", "about", "expected"), [
    (100.0, 100.0, False, "holds"),
    (101.9, 100.0, False, "holds"),
    (97.0, 100.0, False, "holds approximately"),
    (109.0, 100.0, False, "holds approximately"),
    (111.0, 100.0, False, "does not hold as stated"),
    (111.0, 100.0, True, "holds approximately"),
    (124.0, 100.0, True, "holds approximately"),
    (126.0, 100.0, True, "does not hold as stated"),
    (10.0, 510.0, False, "does not hold as stated"),
])
def test_verdict_rule_on_made_up_claims(computed, claimed, about, expected):
    got, deviation, band = verdict(computed, claimed, about)
    assert got == expected and got in VERDICTS
    assert deviation == pytest.approx(100 * (computed / claimed - 1))
    assert math.isnan(band) == (got == "holds")


def test_a_claim_stated_exactly_holds_only_exactly():
    assert verdict(9.0, 9.0, exact=True).verdict == "holds"
    assert verdict(0.504, 0.5, exact=True).verdict == "holds approximately"
    assert verdict(0.504, 0.5).verdict == "holds"  # a rounded number: within 2%


def test_qualitative_and_range_verdicts_are_in_the_vocabulary():
    assert qualitative(True).verdict == "holds" and qualitative(False).verdict == "does not hold as stated"
    assert [over_range(v).verdict for v in ([True, True], [False, True], [False, False])] == [
        "holds", "holds conditionally", "does not hold as stated"]


def test_verdict_refuses_a_zero_claim():
    with pytest.raises(ValueError, match="0"):
        verdict(1.0, 0.0)


@pytest.fixture(scope="module")
def ledger(costs) -> pd.DataFrame:
    return claims(costs.reset_index()).set_index("claim")


def _row(ledger: pd.DataFrame, like: str) -> pd.Series:
    rows = ledger.filter(like=like, axis=0)
    assert len(rows) == 1, (like, rows.index.tolist())
    return rows.iloc[0]


def test_vocabulary_is_closed_and_checked(ledger):
    assert list(VERDICTS) == ["holds", "holds approximately", "holds conditionally", "does not hold as stated",
                              "not tested"]
    assert set(ledger["verdict"]) <= set(VERDICTS)
    qualified = ledger[ledger["verdict"] != "holds"]
    assert qualified["condition"].str.len().gt(20).all()  # each says within what, where, what the source says
    good = ledger.reset_index()
    check_ledger(good)
    with pytest.raises(ValueError, match="vocabulary"):
        check_ledger(good.assign(verdict=["does not hold", *good["verdict"].tolist()[1:]]))
    with pytest.raises(ValueError, match="condition"):
        check_ledger(good.assign(condition=""))


def test_claims_ledger_verdicts(ledger):
    assert len(ledger) == 15
    assert _row(ledger, "358M")["verdict"] == "does not hold as stated"
    assert "Total: 358M ops" in _row(ledger, "358M")["condition"]
    assert _row(ledger, "854M")["verdict"] == "holds"
    assert _row(ledger, "9× fewer")["verdict"] == "holds"
    assert _row(ledger, "halves")["verdict"] == "holds approximately"  # the BN's 2c parameters do not halve
    for like in ("about 3×", "similar cost", "ResNet-50 costs about"):
        assert _row(ledger, like)["verdict"] == "holds approximately"
        assert "within 25%" in _row(ledger, like)["condition"]


def test_squeezenet_rows(ledger):
    fewer = _row(ledger, "50× fewer parameters")
    assert fewer["verdict"] == "holds approximately" and "within 10%" in fewer["condition"]
    assert fewer["ratio"] == pytest.approx(60_965_224 / 1_248_424)  # the paper's AlexNet over SqueezeNet 1.0
    for like in ("less than 0.5 MB", "... 510× smaller"):
        row = _row(ledger, like)
        assert row["verdict"] == "does not hold as stated"
        assert "with model compression techniques" in row["condition"]  # the source's own wording
        assert f"{60_965_224 / 1_248_424:.1f}×" in row["condition"]  # ... and what the parameter count gives
    assert "Deep Compression" in _row(ledger, "less than 0.5 MB")["condition"]
    assert _row(ledger, "Deep Compression shrinks")["verdict"] == "not tested"


def test_densenet_row_holds_conditionally_above_the_hand_break_even(ledger):
    row = _row(ledger, "DenseNet-B")
    assert row["verdict"] == "holds conditionally"
    assert f"c > {HAND_BREAK_EVEN[32]} at k = 32" in row["condition"]
    assert f"equal at c = {HAND_BREAK_EVEN[32]}" in row["condition"]
    # DenseNet-121's input widths: 64 + 32i (i < 6), 128 + 32i (i < 12), 256 + 32i (i < 24), 512 + 32i (i < 16).
    widths = [s + 32 * i for s, n in ((64, 6), (128, 12), (256, 24), (512, 16)) for i in range(n)]
    assert f"{sum(w > HAND_BREAK_EVEN[32] for w in widths)} of DenseNet-121's {len(widths)} layers" in row["condition"]


def test_write_tables(tmp_path):
    paths = write_tables(tmp_path)
    assert [p.name for p in paths] == ["arch_costs.csv", "arch_costs.md", "arch_costs.tex", "claims.csv", "claims.md"]
    tex = (tmp_path / "arch_costs.tex").read_text()
    assert tex.count(r"\\") == len(ROWS) + 1 and r"\begin{tabular}" in tex
    assert "| ResNet-50 (v1.5: stride on the 3×3) |" in (tmp_path / "arch_costs.md").read_text()
    assert "MACs" in (tmp_path / "arch_costs.md").read_text().splitlines()[0]
