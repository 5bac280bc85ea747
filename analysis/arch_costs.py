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

Each claim in :data:`CLAIMS` gets a verdict from :func:`verdict`, a rule written once: the computed value over
the claimed one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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

EXACT_TOLERANCE = 0.02   # a stated number is rounded to 2-3 significant digits: within 2% it holds
APPROX_TOLERANCE = 0.10  # within 10% of a stated number: holds approximately
ABOUT_TOLERANCE = 0.25   # claims worded "about"/"similar": within 25% holds approximately


def verdict(computed: float, claimed: float, about: bool = False) -> tuple[str, float]:
    """The rule every quantitative claim is judged by, on the ratio computed / claimed.

    Returns (verdict, deviation in %): ``holds`` within 2% (the rounding of a stated number), ``holds
    approximately`` within 10% (25% for a claim worded "about" or "similar"), else ``does not hold``.
    """
    if claimed == 0:
        raise ValueError("a claimed value of 0 has no ratio")
    deviation = 100.0 * (computed / claimed - 1.0)
    if abs(deviation) <= 100 * EXACT_TOLERANCE:
        return "holds", deviation
    if abs(deviation) <= 100 * (ABOUT_TOLERANCE if about else APPROX_TOLERANCE):
        return "holds approximately", deviation
    return "does not hold", deviation


def qualitative(ok: bool) -> tuple[str, float]:
    """A claim with no number to compare ('fewer', 'most'): holds or does not, no deviation."""
    return ("holds" if ok else "does not hold"), float("nan")


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


def densenet_b_break_even(growth: int = 32, bn_size: int = 4, max_c: int = 2048) -> int:
    """Smallest input width c at which a DenseNet-B layer has fewer parameters than the plain 3x3 layer."""
    for c in range(1, max_c + 1):
        if parameters(A.DenseLayerB(c, growth, bn_size)) < parameters(A.PlainDenseLayer(c, growth)):
            return c
    raise ValueError(f"no break-even below c = {max_c}")


def claims(costs: pd.DataFrame) -> pd.DataFrame:
    """One row per quantitative claim of the sources: computed values, ratio, verdict, and why when it fails."""
    p = costs.set_index("key")["params"].to_dict()
    m = costs.set_index("key")["MACs"].to_dict()
    rows = []

    def add(claim: str, source: str, computed: str, ratio: float, judged: tuple[str, float], note: str = "") -> None:
        v, dev = judged
        rows.append({"claim": claim, "source": source, "computed": computed, "ratio": ratio, "verdict": v,
                     "deviation_pct": dev, "note": note})

    r = p["resnet_standard_256"] / p["resnet_bottleneck_256"]
    add("the bottleneck block (1×1 256→64, 3×3, 1×1 64→256) has about 3× fewer parameters than the 'standard' "
        "block (3×3 256→64, 3×3 64→64)", "ResNet post (He et al. 2016)",
        f"{p['resnet_standard_256']:,} vs {p['resnet_bottleneck_256']:,} params", r, verdict(r, 3.0, about=True),
        "2.65×: the 3×3 256→64 conv alone has 2.1× the bottleneck block's parameters")
    r = m["resnet_bottleneck_256"] / m["resnet_basic_64"]
    add("ResNet pairs the 64-channel basic block with the 256-channel bottleneck block at similar cost",
        "ResNet paper (He et al. 2016, fig. 5)",
        f"{m['resnet_bottleneck_256'] / 1e6:.1f}M vs {m['resnet_basic_64'] / 1e6:.1f}M MACs at 56×56; "
        f"{p['resnet_bottleneck_256']:,} vs {p['resnet_basic_64']:,} params", r, verdict(r, 1.0, about=True))
    r = m["conv3x3_256"] / m["conv1x1_256"]
    add("a 1×1 convolution costs 9× fewer operations than a 3×3 with the same channels", "inception lecture",
        f"{m['conv3x3_256'] / 1e6:.1f}M vs {m['conv1x1_256'] / 1e6:.1f}M MACs", r, verdict(r, 9.0))
    add("the naive inception module on 28×28×256 costs 854M operations", "inception lecture (CS231n)",
        f"{m['inception_naive'] / 1e6:.1f}M MACs", m["inception_naive"] / 854e6,
        verdict(m["inception_naive"], 854e6))
    add("1×1 reductions cut the inception example to 358M operations", "inception lecture (CS231n)",
        f"{m['inception_reduced'] / 1e6:.1f}M MACs", m["inception_reduced"] / 358e6,
        verdict(m["inception_reduced"], 358e6),
        "the lecture's own terms (12.8M + 12.8M + 25.7M + 86.7M + 120.4M + 12.8M) add up to 271M, not 358M: "
        "the reduction is larger than stated (3.15×, not 2.4×)")
    rf3 = receptive_field(_seq(*[_conv(1, 1, 3) for _ in range(3)]), 1)
    rf7 = receptive_field(_conv(1, 1, 7), 1)
    r = p["stack_3x3_x3_256"] / p["conv7x7_256"]
    add("three stacked 3×3 convolutions see what one 7×7 sees (receptive field)", "VGG paper (Simonyan & "
        "Zisserman 2015, §2.3)", f"receptive field {rf3}×{rf3} vs {rf7}×{rf7}", rf3 / rf7, qualitative(rf3 == rf7))
    add("... with fewer parameters: 27C² vs 49C², the 7×7 has 81% more", "VGG paper (§2.3)",
        f"{p['conv7x7_256']:,} vs {p['stack_3x3_x3_256']:,} params at C = 256 (7×7 / stack)", 1 / r,
        verdict(1 / r, 1.81))
    vgg = A.VGG16()
    fc = sum(q.numel() for q in vgg.classifier.parameters())
    share = fc / parameters(vgg)
    add("most of VGG-16's parameters sit in its fully connected layers", "VGG / CNN architectures lecture",
        f"{fc:,} of {parameters(vgg):,} params ({100 * share:.1f}%)", share, qualitative(share > 0.5))
    r = p["alexnet"] / p["squeezenet1_0"]
    add("SqueezeNet has about 50× fewer parameters than AlexNet", "SqueezeNet paper (Iandola et al. 2016)",
        f"{p['alexnet']:,} vs {p['squeezenet1_0']:,} params", r, verdict(r, 50.0, about=True),
        "torchvision's AlexNet (61.1M); the paper's AlexNet (60.9M) gives the same 49×")
    mb = 4 * p["squeezenet1_0"] / 1e6
    add("SqueezeNet is about 0.5 MB", "SqueezeNet paper", f"{mb:.2f} MB as float32 ({p['squeezenet1_0']:,} × 4 bytes)",
        mb / 0.5, verdict(mb, 0.5, about=True),
        "0.5 MB needs Deep Compression (pruning, 6-bit or 8-bit quantisation, Huffman coding) on top of the "
        "architecture; uncompressed it is 10× larger")
    r = p["alexnet"] / p["squeezenet1_0"]
    add("... 510× smaller than AlexNet", "SqueezeNet paper", f"float32: {4 * p['alexnet'] / 1e6:.0f} MB vs {mb:.2f} MB",
        r, verdict(r, 510.0),
        "the architecture alone gives 49× (float32 vs float32); the rest is Deep Compression of SqueezeNet "
        "against an uncompressed AlexNet")
    c_even = densenet_b_break_even()
    b_over_plain_64 = parameters(A.DenseLayerB(64, 32)) / parameters(A.PlainDenseLayer(64, 32))
    r = p["densenet_b_layer"] / p["densenet_plain_layer"]
    add("DenseNet-B's 1×1 bottleneck reduces parameters against the plain BN-ReLU-3×3 layer", "DenseNet paper "
        "(Huang et al. 2017, §3)", f"at c = 256, k = 32: {p['densenet_b_layer']:,} vs {p['densenet_plain_layer']:,} "
        f"params; fewer from c = {c_even} on (≈ 7.2k)", r, qualitative(r < 1),
        f"only for inputs wider than {c_even - 1} channels at k = 32: at c = 64 the B layer has "
        f"{b_over_plain_64:.1f}× the plain layer's parameters")
    r = p["densenet_transition_05"] / p["densenet_transition_1"]
    add("compression θ = 0.5 halves the transition layer's output and parameters", "DenseNet paper (§3)",
        f"{p['densenet_transition_05']:,} vs {p['densenet_transition_1']:,} params at c = 256", r, verdict(r, 0.5),
        "the 1×1 conv halves exactly; the BN before it (2c parameters) does not shrink")
    r = m["resnet50_paper"] / m["resnet34"]
    add("ResNet-50 costs about as much as ResNet-34 although it is deeper (bottleneck blocks)", "ResNet paper "
        "(table 1: 3.8 vs 3.6 GFLOPs)", f"{m['resnet50_paper'] / 1e9:.2f}G (paper layout) vs "
        f"{m['resnet34'] / 1e9:.2f}G MACs", r, verdict(r, 1.0, about=True),
        f"judged on the paper's layout (stride on the first 1×1); torchvision's v1.5 (stride on the 3×3) costs "
        f"{m['resnet50'] / 1e9:.2f}G, {m['resnet50'] / m['resnet34']:.2f}× ResNet-34")
    return pd.DataFrame.from_records(rows)


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
    "Claims ledger. ratio = computed / claimed where a number is claimed. Verdict rule (analysis.arch_costs."
    f"verdict): within {100 * EXACT_TOLERANCE:.0f}% holds; within {100 * APPROX_TOLERANCE:.0f}% "
    f"({100 * ABOUT_TOLERANCE:.0f}% for claims worded 'about' or 'similar') holds approximately, with the "
    "deviation; otherwise does not hold. Qualitative claims ('fewer', 'most') hold or do not.")


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
    md = ledger.assign(ratio=[f"{r:.3g}" for r in ledger["ratio"]],
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
