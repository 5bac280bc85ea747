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

from analysis.arch_costs import (
    ROWS,
    claims,
    cost_table,
    densenet_b_break_even,
    macs,
    parameters,
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


def test_receptive_fields_and_densenet_break_even():
    from torch import nn

    assert receptive_field(nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)]), 1) == 7
    assert receptive_field(nn.Conv2d(1, 1, 5, padding=2), 1) == 5
    # Closed form: the B layer (2c + 4kc + 8k + 36k^2) has fewer parameters than the plain one (2c + 9kc) when
    # 5kc > 8k + 36k^2, i.e. c > (8 + 36k) / 5.
    for k in (12, 32):
        assert densenet_b_break_even(k) == math.floor((8 + 36 * k) / 5) + 1


@pytest.mark.parametrize(("computed", "claimed", "about", "expected"), [
    (100.0, 100.0, False, "holds"),
    (101.9, 100.0, False, "holds"),
    (97.0, 100.0, False, "holds approximately"),
    (109.0, 100.0, False, "holds approximately"),
    (111.0, 100.0, False, "does not hold"),
    (111.0, 100.0, True, "holds approximately"),
    (124.0, 100.0, True, "holds approximately"),
    (126.0, 100.0, True, "does not hold"),
    (10.0, 510.0, False, "does not hold"),
])
def test_verdict_rule_on_made_up_claims(computed, claimed, about, expected):
    got, deviation = verdict(computed, claimed, about)
    assert got == expected
    assert deviation == pytest.approx(100 * (computed / claimed - 1))


def test_verdict_refuses_a_zero_claim():
    with pytest.raises(ValueError, match="0"):
        verdict(1.0, 0.0)


def test_claims_ledger_verdicts(costs):
    ledger = claims(costs.reset_index()).set_index("claim")
    by_start = {c.split(" ")[0] + " " + c.split(" ")[1]: v for c, v in ledger["verdict"].items()}
    assert len(ledger) == 14 and set(ledger["verdict"]) <= {"holds", "holds approximately", "does not hold"}
    assert ledger.filter(like="358M", axis=0)["verdict"].item() == "does not hold"
    assert ledger.filter(like="854M", axis=0)["verdict"].item() == "holds"
    assert ledger.filter(like="0.5 MB", axis=0)["verdict"].item() == "does not hold"
    assert ledger.filter(like="9× fewer", axis=0)["verdict"].item() == "holds"
    assert by_start  # every claim has a verdict
    assert ledger.loc[ledger["verdict"] == "does not hold", "note"].str.len().gt(20).all()  # each says why


def test_write_tables(tmp_path):
    paths = write_tables(tmp_path)
    assert [p.name for p in paths] == ["arch_costs.csv", "arch_costs.md", "arch_costs.tex", "claims.csv", "claims.md"]
    tex = (tmp_path / "arch_costs.tex").read_text()
    assert tex.count(r"\\") == len(ROWS) + 1 and r"\begin{tabular}" in tex
    assert "| ResNet-50 (v1.5: stride on the 3×3) |" in (tmp_path / "arch_costs.md").read_text()
    assert "MACs" in (tmp_path / "arch_costs.md").read_text().splitlines()[0]
