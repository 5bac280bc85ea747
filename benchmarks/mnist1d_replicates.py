"""How fast R = 20 MNIST-1D models train together as one stacked Ensemble, measured in one run, as markdown tables.

Why it exists: the MNIST-1D families (``experiments.models``) are built from ``experiments.layers``, so
``Ensemble(mode="stack")`` runs all R replicates as one module call with stacked parameters (batched matmuls),
and they share one fused Adam. This script checks what that buys over the obvious alternative, on the presets'
own step: R = 20 replicates (seeds 10000..10019), one mini-batch of N = 100 MNIST-1D training signals (the first
100 of the 4,000 that ``experiments.data.mnist1d`` generates, cached under ``--cache-dir``), Adam lr 1e-2.

(a) the repository's way: ``Ensemble(lambda: Family(w), seeds, "stack")``, ``make_optimizer(..., replicates=20)``
    (fused Adam) and the replicates' ``per_replicate_cross_entropy`` summed before ``backward``: exactly the step
    ``experiments.train.train`` takes (``zero_grad``, forward, loss, backward, optimizer step);
(b) the baseline: a Python loop over 20 solo modules of the same class (plain parameters, each built as a solo
    run builds it: ``torch.manual_seed(seed)`` then ``Family(w)``), each with its own default ``torch.optim.Adam``
    and ``F.cross_entropy``, on the same batch.

Cases: ``MLPClassifier`` (40 -> 100 -> w -> 100 -> 10) at w = 8 and 64 and ``CNN1d`` (the reference CNN, middle
convolution w channels) at w = 8, each with a target of >= 3x; for context ``CNN1d`` at w = 25 (the reference
CNN itself) and 64 and ``MLPClassifier`` at w = 256, and, at w = 8, the same Ensemble in its other modes
(``ensemble=loop``: a Python loop over the replicates' slices; ``ensemble=vmap``). Before timing, every variant's
losses at the initial weights are checked against (b)'s: they compute the same thing. A second table splits
(a)'s step at w = 8 into forward (with ``zero_grad`` and the loss), backward and optimizer step (wall time of
each phase, ``perf_counter`` around it), so that a reader sees where the time goes.

Timing: every variant gets warm-up steps (first-call allocations, the optimizer's lazy imports), then as many
steps per round as fill about ``--budget`` seconds; the variants of a case take turns within each round and the
best of ``--rounds`` rounds is reported, because this machine may be shared: other processes only ever add
time. The ratios are of times measured in the same rounds. The load average before and after is printed so
that a noisy run can be recognised: with 2 threads on 2 cores, a process busy on one core makes every kernel
large enough to be split between the threads wait for its second thread, which costs (a), whose kernels are
the large ones, far more than (b), so a loaded machine understates the speed-ups. The process start-up
(imports, in a fresh process) and loading the data are timed apart and are not part of any step.

Run:  python benchmarks/mnist1d_replicates.py            (under a minute on 2 idle cores; <= 2 minutes loaded)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from machine_info import import_seconds, load, machine, step_parser  # benchmarks/machine_info.py, beside this script
from torch import nn

from experiments.data import mnist1d
from experiments.ensemble import Ensemble
from experiments.models.cnn1d import CNN1d
from experiments.models.mlp_classifier import MLPClassifier
from experiments.tasks import per_replicate_cross_entropy
from experiments.train import make_optimizer, tune_allocator

R = 20
N = 100
SEEDS = list(range(10000, 10000 + R))  # the MNIST-1D presets' seeds
LR = 1e-2                              # the MNIST-1D presets' Adam learning rate
THREADS = 2
TARGET = 3.0
Step = Callable[[], None]


@dataclass(frozen=True)
class Case:
    family: type[nn.Module]
    width: int
    target: float | None          # None: for context only
    modes: tuple[str, ...] = ()   # other Ensemble modes timed beside "stack"

    @property
    def label(self) -> str:
        return f"{self.family.__name__} w={self.width}"


CASES = (
    Case(MLPClassifier, 8, TARGET, ("loop", "vmap")),
    Case(MLPClassifier, 64, TARGET),
    Case(CNN1d, 8, TARGET, ("loop", "vmap")),
    Case(CNN1d, 25, None),
    Case(CNN1d, 64, None),
    Case(MLPClassifier, 256, None),
)


# -- the two ways to train 20 replicates ------------------------------------------------------------------------
def ensemble_variant(case: Case, seeds: list[int], mode: str, x: torch.Tensor,
                     y: torch.Tensor) -> tuple[Step, Callable[[], torch.Tensor], Ensemble]:
    """(a): one step of experiments.train.train (without its logging) for ``Ensemble(Family(w), seeds, mode)``;
    also a function returning the replicates' losses (no gradient) and the model."""
    model = Ensemble(lambda: case.family(case.width), seeds, mode)
    opt = make_optimizer(model.parameters_in_source_order(), LR, len(seeds))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        per_replicate_cross_entropy(model(x), y).sum().backward()
        opt.step()

    def losses() -> torch.Tensor:
        with torch.no_grad():
            return per_replicate_cross_entropy(model(x), y)

    return step, losses, model


def solo_variant(case: Case, seeds: list[int], x: torch.Tensor,
                 y: torch.Tensor) -> tuple[Step, Callable[[], torch.Tensor]]:
    """(b): a Python loop over R solo modules, each with its own default (unfused) Adam: R solo runs' steps."""
    modules = []
    for seed in seeds:
        torch.manual_seed(seed)
        modules.append(case.family(case.width))
    opts = [torch.optim.Adam(m.parameters(), lr=LR) for m in modules]

    def step() -> None:
        for module, opt in zip(modules, opts, strict=True):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(module(x), y).backward()
            opt.step()

    def losses() -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([F.cross_entropy(m(x), y) for m in modules])

    return step, losses


# -- timing ---------------------------------------------------------------------------------------------------
def time_steps(steps: dict[str, Step], rounds: int, budget: float) -> dict[str, float]:
    """Best-of-``rounds`` seconds per step of each function. Each gets two warm-up steps, then in every round as
    many steps as fill about ``budget`` seconds at its fastest pace so far (so that one slow warm-up step does not
    shrink every round); within a round the functions take turns, so that a burst of load from another process
    hits them alike."""
    pace = {}
    for name, step in steps.items():
        step()
        t0 = time.perf_counter()
        step()
        pace[name] = time.perf_counter() - t0
    best = dict.fromkeys(steps, math.inf)
    for _ in range(rounds):
        for name, step in steps.items():
            count = max(1, round(budget / pace[name]))
            t0 = time.perf_counter()
            for _ in range(count):
                step()
            best[name] = min(best[name], (time.perf_counter() - t0) / count)
            pace[name] = min(pace[name], best[name])
    return best


def phase_ms(model: Ensemble, x: torch.Tensor, y: torch.Tensor, step_seconds: float, rounds: int,
             budget: float) -> dict[str, float]:
    """(a)'s step split into its phases: ms per step of forward (``zero_grad``, forward, loss), backward and
    optimizer step, from the round with the least total (the phases of one round add up to its step time).
    ``step_seconds`` (the step's best time) sets how many steps fill a round of about ``budget`` seconds."""
    opt = make_optimizer(model.parameters_in_source_order(), LR, model.replicates)
    clock = time.perf_counter

    def step(acc: list[float]) -> None:
        t0 = clock()
        opt.zero_grad(set_to_none=True)
        loss = per_replicate_cross_entropy(model(x), y).sum()
        t1 = clock()
        loss.backward()
        t2 = clock()
        opt.step()
        t3 = clock()
        acc[0] += t1 - t0
        acc[1] += t2 - t1
        acc[2] += t3 - t2

    for _ in range(2):  # warm-up (this optimizer's first steps)
        step([0.0, 0.0, 0.0])
    count = max(1, round(budget / step_seconds))
    best = [math.inf] * 3
    for _ in range(rounds):
        acc = [0.0, 0.0, 0.0]
        for _ in range(count):
            step(acc)
        if sum(acc) < sum(best):
            best = acc
    return {name: 1e3 * t / count for name, t in zip(("forward", "backward", "optimizer"), best, strict=True)}



# -- the tables -------------------------------------------------------------------------------------------------
def main() -> None:
    args = step_parser(__doc__, budget=0.15).parse_args()
    torch.set_num_threads(THREADS)
    tune_allocator()  # as experiments.train.train does before training
    seeds = SEEDS
    if args.smoke:
        seeds, args.rounds, args.budget = SEEDS[:2], 1, 0.01

    started, load_before = time.time(), load()
    imports = import_seconds(("experiments.ensemble", "experiments.train", "experiments.models.cnn1d",
                               "experiments.models.mlp_classifier"))
    t0 = time.perf_counter()
    data = mnist1d(4000, 1000, args.cache_dir)
    data_seconds = time.perf_counter() - t0
    x, y = data.x[:N], data.labels[:N]

    rows: list[tuple[str, ...]] = []
    phases: dict[str, dict[str, float]] = {}
    for case in CASES:
        stack, stack_losses, stack_model = ensemble_variant(case, seeds, "stack", x, y)
        solo, solo_losses = solo_variant(case, seeds, x, y)
        steps = {"stack": stack, "solo": solo}
        reference = solo_losses()
        checks = {"stack": stack_losses()}
        for mode in case.modes:
            steps[mode], mode_losses, _ = ensemble_variant(case, seeds, mode, x, y)
            checks[mode] = mode_losses()
        for mode, got in checks.items():  # the variants compute the same losses (float32 rounding apart)
            if not torch.allclose(got, reference, rtol=1e-5, atol=1e-5):
                raise RuntimeError(f"{case.label}: ensemble={mode} losses {got.tolist()} differ from the solo "
                                   f"modules' {reference.tolist()}")
        t = time_steps(steps, args.rounds, args.budget)
        for mode in ("stack", *case.modes):
            ratio = t["solo"] / t[mode]
            if mode == "stack" and case.target is not None:
                target, met = f">= {case.target:.0f}x", "met" if ratio >= case.target else "**missed**"
            else:
                target, met = "(context)", ""
            rows.append((case.label, f"`ensemble={mode}`" + (" (a)" if mode == "stack" else ""),
                         f"{1e3 * t[mode]:.2f}", f"{1e3 * t['solo']:.2f}", f"**{ratio:.2f}x**", target, met))
        if case.width == 8:
            phases[case.label] = phase_ms(stack_model, x, y, t["stack"], args.rounds, args.budget)

    print(f"Machine: {machine()}")
    print(f"R={len(seeds)} replicates (seeds {seeds[0]}..{seeds[-1]}), one mini-batch of N={N} MNIST-1D training "
          f"signals, Adam lr {LR:g}, {torch.get_num_threads()} torch threads; steps best of {args.rounds} rounds "
          f"of ~{args.budget:g} s per variant, variants alternated; load average before {load_before}, after "
          f"{load()}; benchmark took {time.time() - started:.0f} s, of which process start-up (imports in a "
          f"fresh process) {imports:.1f} s and loading MNIST-1D {data_seconds:.1f} s, counted apart from the steps")
    print()
    print(f"| case | Ensemble | ms per step, Ensemble | ms per step, {len(seeds)} solo modules (b) "
          "| speed-up (b)/Ensemble | target | met |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("Where (a)'s step goes (`ensemble=stack`, ms per step; forward includes `zero_grad` and the loss):")
    print()
    print("| case | forward | backward | optimizer (fused Adam) | step |")
    print("|---|---|---|---|---|")
    for label, ph in phases.items():
        total = sum(ph.values())
        cells = [f"{ms:.2f} ({100 * ms / total:.0f}%)" for ms in ph.values()]
        print(f"| {label} | " + " | ".join(cells) + f" | {total:.2f} |")


if __name__ == "__main__":
    main()
