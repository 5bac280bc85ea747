"""The sources' architecture claims, counted by code: a cost table and a claims ledger.

``python -m analysis.arch_costs`` (also run by ``python -m analysis.figures``) writes
``results/tables/arch_costs.{csv,md,tex}`` and ``results/tables/claims.{csv,md}``.

Costs are counted on real modules (``analysis.architectures``), never typed in:

- parameters: the sum of ``p.numel()`` over the module's parameters (BatchNorm's affine parameters included,
  its running statistics not, as torchvision counts them);
- MACs, multiply-accumulates, one per multiply-add, of one forward pass on one input of the stated size:
  ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add of every convolution and matrix
  product (and nothing else: no bias additions, BatchNorm, activations or pooling), so MACs = its count / 2.
  That is the convention of torchvision's published "GFLOPS", which are in fact GMACs.

Each claim of the ledger (:func:`claims`) gets a verdict from the closed vocabulary :data:`VERDICTS`, by a rule
written once (:func:`verdict`: the computed value over the claimed one; :func:`qualitative`, :func:`over_range`),
and a ``condition`` saying what qualifies it: the tolerance, the range where it holds, the source's own wording,
or what testing it would need. Every number in a verdict's text is formatted from the counts or from a published
constant quoted with its citation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from analysis import architectures as A
from analysis.load import DEFAULT_ROOT
from analysis.tables import to_markdown

IMAGENET = (3, 224, 224)


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one input of ``input_shape`` (C, H, W): FlopCounterMode's
    FLOPs (2 per multiply-add of convolutions and matmuls only) halved."""
    module = module.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        module(torch.zeros(1, *input_shape))
    flops = counter.get_total_flops()
    assert flops % 2 == 0, flops
    return flops // 2


@dataclass(frozen=True)
class Row:
    """One row of the cost table: what is counted, on which input, following which layout."""

    key: str
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    layout: str


def _conv(c_in: int, c_out: int, k: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias)


def _seq(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers)


# Blocks are counted without biases or BN where the source's comparison counts convolutions only (said per row).
ROWS: list[Row] = [
    Row("resnet_basic_64", "ResNet basic block, 64 ch (3×3 64→64, 3×3 64→64)",
        lambda: _seq(_conv(64, 64, 3), _conv(64, 64, 3)), (64, 56, 56),
        "convs only, no biases (He et al. 2016, fig. 5 left)"),
    Row("resnet_bottleneck_256", "ResNet bottleneck block (1×1 256→64, 3×3 64→64, 1×1 64→256)",
        lambda: _seq(_conv(256, 64, 1), _conv(64, 64, 3), _conv(64, 256, 1)), (256, 56, 56),
        "convs only, no biases (He et al. 2016, fig. 5 right)"),
    Row("resnet_standard_256", "'standard' block (3×3 256→64, 3×3 64→64)",
        lambda: _seq(_conv(256, 64, 3), _conv(64, 64, 3)), (256, 56, 56),
        "convs only, no biases (the source's comparison)"),
    Row("conv1x1_256", "1×1 conv 256→256", lambda: _conv(256, 256, 1), (256, 28, 28), "no bias"),
    Row("conv3x3_256", "3×3 conv 256→256", lambda: _conv(256, 256, 3), (256, 28, 28), "no bias"),
    Row("inception_naive", "inception module, naive (1×1 128, 3×3 192, 5×5 96, 3×3 max-pool)",
        lambda: A.Inception(256, 128, 192, 96, reduce=0), (256, 28, 28), "'same' padding, biases counted in params"),
    Row("inception_reduced", "inception module, 1×1 reductions to 64 (before 3×3, 5×5; after the pool)",
        lambda: A.Inception(256, 128, 192, 96, reduce=64), (256, 28, 28), "'same' padding, biases counted in params"),
    Row("stack_3x3_x3_256", "three stacked 3×3 convs, 256 ch", lambda: _seq(*[_conv(256, 256, 3) for _ in range(3)]),
        (256, 28, 28), "no biases (Simonyan & Zisserman 2015, §2.3)"),
    Row("conv7x7_256", "one 7×7 conv, 256 ch", lambda: _conv(256, 256, 7), (256, 28, 28), "no bias"),
    Row("densenet_plain_layer", "DenseNet plain layer (BN-ReLU-3×3 conv c→k), c=256, k=32",
        lambda: A.PlainDenseLayer(256, 32), (256, 28, 28), "BN parameters counted"),
    Row("densenet_b_layer", "DenseNet-B layer (BN-ReLU-1×1 c→4k, BN-ReLU-3×3 4k→k), c=256, k=32",
        lambda: A.DenseLayerB(256, 32), (256, 28, 28), "BN parameters counted"),
    Row("densenet_transition_1", "DenseNet transition, no compression (θ=1), c=256",
        lambda: A.Transition(256, 1.0), (256, 28, 28), "BN parameters counted"),
    Row("densenet_transition_05", "DenseNet-C transition, θ=0.5, c=256",
        lambda: A.Transition(256, 0.5), (256, 28, 28), "BN parameters counted"),
    Row("fire_2", "SqueezeNet fire2 (squeeze 16, expand 64 + 64), 96 in", lambda: A.Fire(96, 16, 64, 64),
        (96, 55, 55), "torchvision's layout (biases)"),
    Row("resnet18", "ResNet-18", A.resnet18, IMAGENET, "torchvision"),
    Row("resnet34", "ResNet-34", A.resnet34, IMAGENET, "torchvision"),
    Row("resnet50", "ResNet-50 (v1.5: stride on the 3×3)", A.resnet50, IMAGENET, "torchvision (stride on the 3×3)"),
    Row("resnet50_paper", "ResNet-50 (paper: stride on the first 1×1)", lambda: A.resnet50("1x1"), IMAGENET,
        "He et al. 2016 (stride on the first 1×1)"),
    Row("vgg16", "VGG-16", A.VGG16, IMAGENET, "torchvision (= paper's configuration D)"),
    Row("densenet121", "DenseNet-121", A.densenet121, IMAGENET, "torchvision (DenseNet-BC, k=32, θ=0.5)"),
    Row("squeezenet1_0", "SqueezeNet 1.0", lambda: A.SqueezeNet("1_0"), IMAGENET, "torchvision (= paper)"),
    Row("squeezenet1_1", "SqueezeNet 1.1", lambda: A.SqueezeNet("1_1"), IMAGENET, "torchvision (SqueezeNet repo v1.1)"),
    Row("alexnet", "AlexNet", A.AlexNet, IMAGENET, "torchvision (single-tower, 64-192-384-256-256)"),
    Row("alexnet_original", "AlexNet (original, two towers)", A.AlexNetOriginal, (3, 227, 227),
        "Krizhevsky et al. 2012 / Caffe bvlc_alexnet (grouped conv2, conv4, conv5)"),
]


def cost_table(rows: list[Row] = ROWS) -> pd.DataFrame:
    """Parameters and MACs of every row, counted now."""
    records = []
    for row in rows:
        module = row.build()
        records.append({"key": row.key, "block or network": row.name,
                        "input (C×H×W)": "×".join(map(str, row.input_shape)), "params": parameters(module),
                        "MACs": macs(module, row.input_shape), "layout": row.layout})
    return pd.DataFrame.from_records(records)


# -- The claims ledger ----------------------------------------------------------------------------------------

# The verdicts a reader can act on, and what each row with one must say in its ``condition`` column. Every row of
# the ledger carries one of these (checked by :func:`check_ledger`); every row but a plain "holds" says in
# ``condition`` what qualifies it.
VERDICTS: dict[str, str] = {
    "holds": "the count agrees with the claim (a stated number within its rounding)",
    "holds approximately": "condition: within what tolerance, and the deviation",
    "holds conditionally": "condition: the range where it holds, computed from the counts",
    "does not hold as stated": "condition: what the original source says",
    "not tested": "condition: what testing it would need",
}

EXACT_TOLERANCE = 0.02   # a stated number is rounded to 2-3 significant digits: within 2% it holds
APPROX_TOLERANCE = 0.10  # within 10% of a stated number: holds approximately
ABOUT_TOLERANCE = 0.25   # claims worded "about"/"similar": within 25% holds approximately

# Published numbers, quoted from the sources (not counted here); each with where it is printed.
CS231N_NAIVE_OPS = 854e6    # CS231n (2017) lecture 9, "Naive Inception module": "Total: 854M ops"
CS231N_REDUCED_OPS = 358e6  # same lecture, with 1x1 conv "bottleneck" layers: "Total: 358M ops"
VGG_MORE = 1.81             # Simonyan & Zisserman 2015, §2.3: 7^2 C^2 = 49 C^2 parameters, "i.e. 81% more"
RESNET_MORE = 3.0           # the ResNet post: the bottleneck block has "about 3x fewer" parameters
RESNET_TABLE1_GFLOPS = {"resnet50": 3.8, "resnet34": 3.6}  # He et al. 2016, table 1 (multiply-adds, 1e9)
DENSENET_GROWTH = 32        # Huang et al. 2017: k = 32 for the ImageNet DenseNet-BC (DenseNet-121)
# Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size":
SQZ_FEWER = 50.0            # title; table 2: SqueezeNet, no compression, 32 bit, 4.8 MB, "50x" vs AlexNet
SQZ_TABLE2_MB = {"alexnet": 240.0, "squeezenet": 4.8}  # table 2, 32-bit, uncompressed
SQZ_MAX_MB = 0.5            # title: "<0.5MB model size"
SQZ_DC_MB = 0.47            # table 2: SqueezeNet + Deep Compression (Han et al. 2016), 6 bit, 0.47 MB
SQZ_DC_SMALLER = 510.0      # abstract: "compress SqueezeNet to less than 0.5MB (510x smaller than AlexNet)"
SQZ_ABSTRACT = ("\"with model compression techniques we are able to compress SqueezeNet to less than 0.5MB "
                "(510× smaller than AlexNet)\"")  # the abstract's own wording


class Judged(NamedTuple):
    """A verdict, the deviation computed / claimed - 1 in % (NaN for a qualitative claim) and the tolerance in %
    the verdict was judged within (NaN where none applies)."""

    verdict: str
    deviation_pct: float
    tolerance_pct: float


def verdict(computed: float, claimed: float, about: bool = False, exact: bool = False) -> Judged:
    """The rule every quantitative claim is judged by, on the ratio computed / claimed.

    ``holds`` within 2% (the rounding of a stated number; a claim stated exactly, ``exact``, such as "halves" or
    "9×", only if the count is exactly it); ``holds approximately`` within 10% (25% for a claim worded "about" or
    "similar"); else ``does not hold as stated``, for which the ledger row quotes the source.
    """
    if claimed == 0:
        raise ValueError("a claimed value of 0 has no ratio")
    deviation = 100.0 * (computed / claimed - 1.0)
    band = 100.0 * (ABOUT_TOLERANCE if about else APPROX_TOLERANCE)
    if abs(deviation) <= (1e-9 if exact else 100 * EXACT_TOLERANCE):
        return Judged("holds", deviation, float("nan"))
    if abs(deviation) <= band:
        return Judged("holds approximately", deviation, band)
    return Judged("does not hold as stated", deviation, band)


def qualitative(ok: bool, deviation_pct: float = float("nan")) -> Judged:
    """A claim with no number to compare ('fewer', 'most', 'less than'): holds or does not, no tolerance."""
    return Judged("holds" if ok else "does not hold as stated", deviation_pct, float("nan"))


def over_range(oks: list[bool]) -> Judged:
    """A claim checked at each point of a range: holds if everywhere, conditionally if somewhere."""
    if all(oks):
        return Judged("holds", float("nan"), float("nan"))
    return Judged("holds conditionally" if any(oks) else "does not hold as stated", float("nan"), float("nan"))


NOT_TESTED = Judged("not tested", float("nan"), float("nan"))


def receptive_field(module: nn.Module, channels: int, size: int = 31) -> int:
    """Side of the input square the centre output of ``module`` depends on: the extent of the non-zero
    gradient of that output with respect to the input (weights set to 1, so that nothing cancels)."""
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(1.0)
    x = torch.zeros(1, channels, size, size, requires_grad=True)
    out = module(x)
    out[0, 0, size // 2, size // 2].backward()
    rows = x.grad[0].abs().sum(0).sum(1).nonzero()
    return int(rows.max() - rows.min() + 1)


def meta_parameters(build: Callable[[], nn.Module]) -> int:
    """Parameters of the module ``build`` returns, built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return parameters(build())


def densenet_b_saves(c: int, growth: int = DENSENET_GROWTH, bn_size: int = 4) -> bool:
    """Whether the DenseNet-B layer on ``c`` input channels has fewer parameters than the plain 3x3 layer."""
    return (meta_parameters(lambda: A.DenseLayerB(c, growth, bn_size))
            < meta_parameters(lambda: A.PlainDenseLayer(c, growth)))


def densenet_b_verdict(c: int, growth: int = DENSENET_GROWTH, bn_size: int = 4) -> str:
    """The verdict on "the bottleneck saves parameters" at one input width ``c``."""
    return qualitative(densenet_b_saves(c, growth, bn_size)).verdict


def densenet_b_break_even(growth: int = DENSENET_GROWTH, bn_size: int = 4, max_c: int = 4096) -> int:
    """The break-even input width: the largest c at which the DenseNet-B layer does *not* have fewer parameters
    than the plain 3x3 layer, counted on the modules; the bottleneck saves parameters exactly for c above it (the
    difference of the two counts is linear in c, so there is one crossing)."""
    for c in range(1, max_c + 1):
        if densenet_b_saves(c, growth, bn_size):
            return c - 1
    raise ValueError(f"no break-even below c = {max_c}")


def _inception_terms(reduce: int = 64, hw: int = 28) -> list[int]:
    """MACs of each convolution of the reduced inception example, in the lecture's order of terms."""
    m = A.Inception(256, 128, 192, 96, reduce=reduce)
    convs = [m.b3[0], m.b5[0], m.b1, m.b3[1], m.b5[1], m.bp[1]]
    return [macs(conv, (conv.in_channels, hw, hw)) for conv in convs]


def claims(costs: pd.DataFrame) -> pd.DataFrame:
    """One row per claim of the sources: computed values, ratio, verdict, its condition, and a note."""
    p = costs.set_index("key")["params"].to_dict()
    m = costs.set_index("key")["MACs"].to_dict()
    rows = []

    def add(claim: str, source: str, computed: str, ratio: float, judged: Judged, condition: str = "",
            note: str = "") -> None:
        if judged.verdict == "holds approximately":
            condition = "; ".join(filter(None, [f"within {judged.tolerance_pct:.0f}% of the claimed value "
                                                f"({judged.deviation_pct:+.1f}%)", condition]))
        rows.append({"claim": claim, "source": source, "computed": computed, "ratio": ratio,
                     "verdict": judged.verdict, "condition": condition, "deviation_pct": judged.deviation_pct,
                     "note": note})

    r = p["resnet_standard_256"] / p["resnet_bottleneck_256"]
    first = parameters(_conv(256, 64, 3))
    add(f"the bottleneck block (1×1 256→64, 3×3, 1×1 64→256) has about {RESNET_MORE:.0f}× fewer parameters than "
        "the 'standard' block (3×3 256→64, 3×3 64→64)", "ResNet post (He et al. 2016)",
        f"{p['resnet_standard_256']:,} vs {p['resnet_bottleneck_256']:,} params", r,
        verdict(r, RESNET_MORE, about=True),
        note=f"{r:.2f}×: the 3×3 256→64 conv alone has {first / p['resnet_bottleneck_256']:.1f}× the bottleneck "
             "block's parameters")
    r = m["resnet_bottleneck_256"] / m["resnet_basic_64"]
    add("ResNet pairs the 64-channel basic block with the 256-channel bottleneck block at similar cost",
        "ResNet paper (He et al. 2016, fig. 5)",
        f"{m['resnet_bottleneck_256'] / 1e6:.1f}M vs {m['resnet_basic_64'] / 1e6:.1f}M MACs at 56×56; "
        f"{p['resnet_bottleneck_256']:,} vs {p['resnet_basic_64']:,} params", r, verdict(r, 1.0, about=True))
    r = m["conv3x3_256"] / m["conv1x1_256"]
    add("a 1×1 convolution costs 9× fewer operations than a 3×3 with the same channels", "inception lecture",
        f"{m['conv3x3_256'] / 1e6:.1f}M vs {m['conv1x1_256'] / 1e6:.1f}M MACs", r, verdict(r, 9.0, exact=True),
        note="at stride 1 with 'same' padding, for any channel count")
    add(f"the naive inception module on 28×28×256 costs {CS231N_NAIVE_OPS / 1e6:.0f}M operations",
        "inception lecture (CS231n)", f"{m['inception_naive'] / 1e6:.1f}M MACs",
        m["inception_naive"] / CS231N_NAIVE_OPS, verdict(m["inception_naive"], CS231N_NAIVE_OPS))
    terms = _inception_terms()
    assert sum(terms) == m["inception_reduced"], (terms, m["inception_reduced"])
    judged = verdict(m["inception_reduced"], CS231N_REDUCED_OPS)
    add(f"1×1 reductions cut the inception example to {CS231N_REDUCED_OPS / 1e6:.0f}M operations",
        "inception lecture (CS231n)", f"{m['inception_reduced'] / 1e6:.1f}M MACs",
        m["inception_reduced"] / CS231N_REDUCED_OPS, judged,
        condition=f"source: \"Total: {CS231N_REDUCED_OPS / 1e6:.0f}M ops\", but its own six per-layer terms, "
                  f"counted here ({' + '.join(f'{t / 1e6:.1f}M' for t in terms)}), add up to "
                  f"{sum(terms) / 1e6:.1f}M: the total is an addition slip"
                  if judged.verdict == "does not hold as stated" else "",
        note=f"the reduction against the naive module is {m['inception_naive'] / m['inception_reduced']:.2f}×, "
             f"not the {CS231N_NAIVE_OPS / CS231N_REDUCED_OPS:.2f}× the stated totals give")
    rf3 = receptive_field(_seq(*[_conv(1, 1, 3) for _ in range(3)]), 1)
    rf7 = receptive_field(_conv(1, 1, 7), 1)
    r = p["stack_3x3_x3_256"] / p["conv7x7_256"]
    add("three stacked 3×3 convolutions see what one 7×7 sees (receptive field)", "VGG paper (Simonyan & "
        "Zisserman 2015, §2.3)", f"receptive field {rf3}×{rf3} vs {rf7}×{rf7}", rf3 / rf7, qualitative(rf3 == rf7))
    add(f"... with fewer parameters: 27C² vs 49C², the 7×7 has {100 * (VGG_MORE - 1):.0f}% more",
        "VGG paper (§2.3)", f"{p['conv7x7_256']:,} vs {p['stack_3x3_x3_256']:,} params at C = 256 (7×7 / stack)",
        1 / r, verdict(1 / r, VGG_MORE))
    vgg = A.VGG16()
    fc = sum(q.numel() for q in vgg.classifier.parameters())
    share = fc / parameters(vgg)
    add("most of VGG-16's parameters sit in its fully connected layers", "VGG / CNN architectures lecture",
        f"{fc:,} of {parameters(vgg):,} params ({100 * share:.1f}%)", share, qualitative(share > 0.5))

    # SqueezeNet: the architecture's claim (parameters) apart from the compressed model's (bytes after Deep
    # Compression), which needs trained weights and is not counted here.
    alex, sqz, alex_tv = p["alexnet_original"], p["squeezenet1_0"], p["alexnet"]
    mb, alex_mb = 4 * sqz / 1e6, 4 * alex / 1e6
    paper_fewer = SQZ_TABLE2_MB["alexnet"] / SQZ_TABLE2_MB["squeezenet"]
    r = alex / sqz
    add(f"SqueezeNet has {SQZ_FEWER:.0f}× fewer parameters than AlexNet (the architecture alone)",
        "SqueezeNet paper (Iandola et al. 2016, title; table 2)", f"{alex:,} vs {sqz:,} params", r,
        verdict(r, SQZ_FEWER),
        note=f"AlexNet as the paper's (Caffe's two-tower bvlc_alexnet); torchvision's ({alex_tv:,}) gives "
             f"{alex_tv / sqz:.1f}×; the paper's table 2: {SQZ_TABLE2_MB['alexnet']:.0f} MB vs "
             f"{SQZ_TABLE2_MB['squeezenet']} MB at 32 bit, {paper_fewer:.0f}×")
    dc = (f"source: {SQZ_ABSTRACT}; table 2: {SQZ_DC_MB} MB only after Deep Compression (pruning, 6-bit "
          f"quantisation, Huffman coding; Han et al. 2016), against an uncompressed {SQZ_TABLE2_MB['alexnet']:.0f} "
          f"MB AlexNet. By parameter count, what is counted here: {mb:.2f} MB at 32 bit, {r:.1f}× fewer than "
          "AlexNet")
    add(f"SqueezeNet is less than {SQZ_MAX_MB} MB", "SqueezeNet paper (title)",
        f"{mb:.2f} MB as float32 ({sqz:,} × 4 bytes; MB = 10⁶ bytes)", mb / SQZ_MAX_MB,
        qualitative(mb < SQZ_MAX_MB, 100 * (mb / SQZ_MAX_MB - 1)), condition=dc)
    judged = verdict(r, SQZ_DC_SMALLER)
    add(f"... {SQZ_DC_SMALLER:.0f}× smaller than AlexNet", "SqueezeNet paper (abstract; table 2)",
        f"float32: {alex_mb:.0f} MB vs {mb:.2f} MB ({r:.1f}×)", r / SQZ_DC_SMALLER, judged,
        condition=f"source (abstract): {SQZ_DC_SMALLER:.0f}× \"with model compression techniques\"; it "
                  f"is table 2's {SQZ_TABLE2_MB['alexnet']:.0f} MB / {SQZ_DC_MB} MB, Deep-Compressed SqueezeNet "
                  f"against uncompressed AlexNet; by parameter count, what is counted here, {r:.1f}×"
        if judged.verdict == "does not hold as stated" else "")
    add(f"Deep Compression shrinks SqueezeNet to {SQZ_DC_MB} MB, {SQZ_DC_SMALLER:.0f}× smaller than the "
        "uncompressed AlexNet", "SqueezeNet paper (table 2)", "", float("nan"), NOT_TESTED,
        condition="would need trained SqueezeNet weights, Deep Compression's pruning, 6-bit weight sharing and "
                  "Huffman coding (Han et al. 2016), and the byte size of the encoded model",
        note=f"the paper's own numbers are consistent: {SQZ_TABLE2_MB['alexnet']:.0f} MB / {SQZ_DC_MB} MB = "
             f"{SQZ_TABLE2_MB['alexnet'] / SQZ_DC_MB:.0f}×; from the counted {mb:.2f} MB that is "
             f"{mb / SQZ_DC_MB:.1f}× compression")

    # Judged over the input widths of DenseNet-121's layers, the network the paper builds with it.
    k = DENSENET_GROWTH
    c_even = densenet_b_break_even(k)
    widths = [layer.body[0].num_features for layer in A.densenet121().modules() if isinstance(layer, A.DenseLayerB)]
    saves = [densenet_b_saves(c, k) for c in widths]
    equal = meta_parameters(lambda: A.DenseLayerB(c_even, k)) == meta_parameters(lambda: A.PlainDenseLayer(c_even, k))
    b_over_plain_64 = meta_parameters(lambda: A.DenseLayerB(64, k)) / meta_parameters(lambda: A.PlainDenseLayer(64, k))
    r = p["densenet_b_layer"] / p["densenet_plain_layer"]
    add("DenseNet-B's 1×1 bottleneck reduces parameters against the plain BN-ReLU-3×3 layer", "DenseNet paper "
        "(Huang et al. 2017, §3)", f"at c = 256, k = {k}: {p['densenet_b_layer']:,} vs {p['densenet_plain_layer']:,} "
        f"params", r, over_range(saves),
        condition=f"only for input widths c > {c_even} at k = {k} (c > {c_even / k:.2f}k; "
                  f"{'equal' if equal else 'more'} at c = {c_even}), BN affine parameters counted; "
                  f"{sum(saves)} of DenseNet-121's {len(widths)} layers (c = {min(widths)} to {max(widths)}) "
                  "are that wide",
        note=f"at c = 64 the B layer has {b_over_plain_64:.1f}× the plain layer's parameters")
    r = p["densenet_transition_05"] / p["densenet_transition_1"]
    halved = A.Transition(256, 0.5).c_out / A.Transition(256, 1.0).c_out
    add("compression θ = 0.5 halves the transition layer's output and parameters", "DenseNet paper (§3)",
        f"{p['densenet_transition_05']:,} vs {p['densenet_transition_1']:,} params at c = 256", r,
        verdict(r, 0.5, exact=True),
        condition=f"the output halves exactly ({halved:g}×); the parameters do not, since the BN before the 1×1 "
                  "conv (2c parameters) does not shrink: 1/2 + 1/(c + 2) of θ = 1's")
    r = m["resnet50_paper"] / m["resnet34"]
    t1 = RESNET_TABLE1_GFLOPS
    add("ResNet-50 costs about as much as ResNet-34 although it is deeper (bottleneck blocks)", "ResNet paper "
        f"(table 1: {t1['resnet50']} vs {t1['resnet34']} GFLOPs)", f"{m['resnet50_paper'] / 1e9:.2f}G (paper "
        f"layout) vs {m['resnet34'] / 1e9:.2f}G MACs", r, verdict(r, 1.0, about=True),
        condition=f"the paper's table 1 itself gives {t1['resnet50'] / t1['resnet34']:.2f}×",
        note=f"judged on the paper's layout (stride on the first 1×1); torchvision's v1.5 (stride on the 3×3) "
             f"costs {m['resnet50'] / 1e9:.2f}G, {m['resnet50'] / m['resnet34']:.2f}× ResNet-34")
    ledger = pd.DataFrame.from_records(rows)
    check_ledger(ledger)
    return ledger


def check_ledger(ledger: pd.DataFrame) -> None:
    """Every verdict is one of :data:`VERDICTS`, and every one but "holds" says what qualifies it."""
    unknown = sorted(set(ledger["verdict"]) - set(VERDICTS))
    if unknown:
        raise ValueError(f"verdicts outside the vocabulary {list(VERDICTS)}: {unknown}")
    bare = ledger[(ledger["verdict"] != "holds") & (ledger["condition"].fillna("").str.strip() == "")]
    if len(bare):
        raise ValueError(f"verdicts without their condition: {bare['claim'].tolist()}")


# -- Writing ----------------------------------------------------------------------------------------------------

def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("×", r"$\times$"), ("→", r"$\to$"), ("θ", r"$\theta$")):
        text = text.replace(a, b)
    return text


def to_latex(table: pd.DataFrame) -> str:
    """A booktabs tabular of ``table`` (numbers with thousands separators), without pandas' jinja2 dependency."""
    def cell(v: object) -> str:
        return f"{v:,}" if isinstance(v, int) else _latex_escape(str(v))

    cols = list(table.columns)
    align = "".join("r" if pd.api.types.is_integer_dtype(table[c]) else "l" for c in cols)
    lines = [r"\begin{tabular}{" + align + "}", r"\toprule",
             " & ".join(_latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


COST_CAPTION = (
    "Parameters and multiply-accumulates (MACs: one per multiply-add) of one forward pass on one input of the "
    "stated size, counted by code on the modules of analysis/architectures.py: parameters summed over the "
    "module, MACs = FLOPs of torch.utils.flop_counter.FlopCounterMode / 2 (it counts 2 per multiply-add, for "
    "convolutions and matrix products only). Whole networks follow torchvision's layouts and match its "
    "published parameter counts and GFLOPS.")
CLAIMS_CAPTION = (
    "Claims ledger. ratio = computed / claimed where a number is claimed. Verdicts (analysis.arch_costs.VERDICTS): "
    + "; ".join(f"{v}: {m}" for v, m in VERDICTS.items()) + ". Rule for stated numbers (analysis.arch_costs."
    f"verdict): within {100 * EXACT_TOLERANCE:.0f}% holds (exactly, for a claim stated exactly); within "
    f"{100 * APPROX_TOLERANCE:.0f}% ({100 * ABOUT_TOLERANCE:.0f}% for claims worded 'about' or 'similar') holds "
    "approximately; otherwise does not hold as stated. Qualitative claims ('fewer', 'most') hold or do not; a "
    "claim checked over a range of inputs holds conditionally where it holds on part of it.")


def write_tables(out_dir: Path) -> list[Path]:
    """``arch_costs.{csv,md,tex}`` and ``claims.{csv,md}`` in ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    costs = cost_table()
    ledger = claims(costs)
    paths = [out_dir / n for n in ("arch_costs.csv", "arch_costs.md", "arch_costs.tex", "claims.csv", "claims.md")]
    costs.to_csv(paths[0], index=False)
    shown = costs.drop(columns=["key"]).assign(params=[f"{v:,}" for v in costs["params"]],
                                               MACs=[f"{v:,}" for v in costs["MACs"]])
    paths[1].write_text(COST_CAPTION + "\n\n" + to_markdown(shown.set_index("block or network")))
    paths[2].write_text("% " + COST_CAPTION + "\n" + to_latex(costs.drop(columns=["key", "layout"])))
    ledger.to_csv(paths[3], index=False)
    md = ledger.assign(ratio=["" if pd.isna(r) else f"{r:.3g}" for r in ledger["ratio"]],
                       deviation_pct=["" if pd.isna(d) else f"{d:+.1f}%" for d in ledger["deviation_pct"]])
    paths[4].write_text(CLAIMS_CAPTION + "\n\n" + to_markdown(md.set_index("claim")))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Count the sources' architectures and judge their claims.")
    parser.add_argument("--out", type=Path, default=DEFAULT_ROOT / "tables",
                        help="table folder (default: results/tables)")
    args = parser.parse_args(argv)
    for path in write_tables(args.out):
        print(path)
    print((args.out / "claims.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
