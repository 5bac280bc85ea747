"""How fast the conv family's replicates train together, measured in one run on this machine, as a markdown table.

Why it exists: every family but the MLP trains its R replicates as one ``experiments.ensemble.Ensemble`` (stacked
parameters, one fused Adam step; the forward pass loops over replicates on native kernels, or vmaps them). This
script checks what that buys over the obvious alternative, and where the time goes:

(a) FLOP rate of conv ensemble training at w=128, R=10 on the conv_sweep preset's images: FLOPs of forward and
    backward per step, as ``FlopCounterMode`` counts them (2 per multiply-add; matmuls and convolutions only),
    divided by the time of a whole training step, against a 2048x2048 fp32 matmul timed in the same process;
(b) at every width of the conv_sweep preset, with its R and N: one training step of the Ensemble (loop mode, the
    default; and vmap mode) against a Python loop of R independent solo ``ConvIdentity`` modules, each with its
    own ``torch.optim.Adam``, on the same images. The solo loop is timed in both memory formats (NCHW and
    channels_last) and the faster one is the baseline: the best a plain loop does. A torch.profiler breakdown
    of the w=8 step says which share is convolution kernels and which is everything else;
(c) the MLP's hand-written batched path (``build_mlp``: bmm via ``BatchedAffine``) against the generic Ensemble,
    vmap and (at R=100 only) loop, over the equivalent ``nn.Sequential(Linear(1,32), Linear(32,w), Linear(w,1))``:
    whether keeping the hand path pays;
(d) the share of a real ``python run.py experiment=conv_sweep width=128`` job's run time spent on metrics and on
    the null (parquet metadata written by experiments.experiment); the process start-up is counted apart.

Every training step is the one ``experiments.train.train`` takes: ``zero_grad``, forward, the replicates' own
losses summed, backward, Adam step (fused for ensembles). Steps are timed best of ``--repeats`` tries, the
variants compared in a row taking turns within each try, because this machine may be shared: other processes
only ever add time. The load average before and after is printed so that a noisy run can be recognised.

Run:  python benchmarks/conv_ensemble.py            (about 3-4 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from machine_info import import_seconds, load, machine, print_table  # benchmarks/machine_info.py, beside this script
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from experiments.config import CONF_DIR, REPO_ROOT, available_cores, log_every
from experiments.data import digits, integers
from experiments.ensemble import Ensemble, Replica
from experiments.models.conv import ConvIdentity
from experiments.models.mlp import build_mlp
from experiments.tasks import per_replicate_mse
from experiments.train import make_optimizer, tune_allocator

PRESET = "conv_sweep"
FLOP_W, FLOP_R = 128, 10          # (a)
MLP_WIDTHS, MLP_RS = (128, 8), (100, 1000)
MLP_LOOP_R = 100                  # (c): the loop mode only here, it is slow
MLP_N = 100                       # the source's integers 0..99
TARGETS = {"peak": 50.0, "w8": 1.5, "any": 1.0, "mlp": 1.1, "metric": 20.0}
CONV_KERNELS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::mkldnn_convolution_backward",
                "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward", "aten::_nnpack_spatial_convolution")
Step = Callable[[], None]


@dataclass(frozen=True)
class Preset:
    """What the conv_sweep preset trains: its widths, replicates, images and optimiser."""

    widths: tuple[int, ...]
    replicates: int
    n_train: int
    n_eval: int
    hidden: int
    activation: str
    lr: float
    epochs: int
    log_every: int


def read_preset() -> Preset:
    """The preset as ``run.py experiment=conv_sweep`` composes it (Hydra's own composition, sweeper included)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={PRESET}"], return_hydra_config=True)
    widths = tuple(int(w) for w in str(cfg.hydra.sweeper.params.width).split(","))
    return Preset(widths, int(cfg.replicates), int(cfg.data.n_train), int(cfg.data.n_eval), int(cfg.model.hidden),
                  str(cfg.model.activation), float(cfg.optim.lr), int(cfg.epochs), log_every(cfg))


# -- the machine ------------------------------------------------------------------------------------------------
def matmul_gflops(n: int = 2048, tries: int = 5) -> float:
    """A 2048x2048 fp32 matmul's FLOP rate (2 n^3 per product), best of ``tries``: the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(tries):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


# -- training steps ---------------------------------------------------------------------------------------------
def ensemble_step(model: nn.Module, x: torch.Tensor, lr: float) -> Step:
    """One step of experiments.train.train (without its logging) for a replicated model."""
    opt = make_optimizer(model.parameters_in_source_order(), lr, model.replicates)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        per_replicate_mse(model(x), x).sum().backward()
        opt.step()

    return step


def solo_step(build: Callable[[], nn.Module], seeds: list[int], x: torch.Tensor, lr: float,
              channels_last: bool) -> Step:
    """A Python loop over R independent modules, each with its own (default, unfused) Adam: R solo runs' steps."""
    modules = []
    for seed in seeds:
        torch.manual_seed(seed)
        module = build()
        modules.append(module.to(memory_format=torch.channels_last) if channels_last else module)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    opts = [torch.optim.Adam(m.parameters(), lr=lr) for m in modules]

    def step() -> None:
        for module, opt in zip(modules, opts, strict=True):
            opt.zero_grad(set_to_none=True)
            F.mse_loss(module(x), x).backward()
            opt.step()

    return step


def step_flops(step_model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one step's forward and backward, as FlopCounterMode counts them (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        per_replicate_mse(step_model(x), x).sum().backward()
    step_model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_steps(steps: dict[str, Step], repeats: int, budget: float) -> dict[str, float]:
    """Best-of-``repeats`` seconds per step of each function. Each gets a warm-up step (first-call allocations,
    oneDNN's kernel set-up), then as many steps per try as fill about ``budget`` seconds; within a try the
    functions take turns, so that a burst of load from another process hits them alike."""
    counts = {}
    for name, step in steps.items():
        step()
        t0 = time.perf_counter()
        step()
        counts[name] = max(1, round(budget / (time.perf_counter() - t0)))
    best = dict.fromkeys(steps, math.inf)
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(counts[name]):
                step()
            best[name] = min(best[name], (time.perf_counter() - t0) / counts[name])
    return best


def seeds_of(r: int) -> list[int]:
    return list(range(10000, 10000 + r))


# -- (a) and (b): the conv family -------------------------------------------------------------------------------
def conv_builder(p: Preset, width: int) -> Callable[[], ConvIdentity]:
    return lambda: ConvIdentity(width, p.hidden, p.activation)


def flop_rate(p: Preset, x: torch.Tensor, width: int, r: int, repeats: int, budget: float) -> tuple[int, float]:
    """(FLOPs per step, best seconds per step) of the loop-mode Ensemble."""
    model = Ensemble(conv_builder(p, width), seeds_of(r), "loop")
    flops = step_flops(model, x)
    return flops, time_steps({"loop": ensemble_step(model, x, p.lr)}, repeats, budget)["loop"]


def conv_width(p: Preset, x: torch.Tensor, width: int, repeats: int, budget: float) -> dict[str, float]:
    """(b) at one width: seconds per step of the Ensemble (loop, vmap) and of the solo loops (NCHW, channels_last),
    and the loop Ensemble's FLOPs per step."""
    build, seeds = conv_builder(p, width), seeds_of(p.replicates)
    loop = Ensemble(build, seeds, "loop")
    flops = step_flops(loop, x)
    steps = {"loop": ensemble_step(loop, x, p.lr),
             "vmap": ensemble_step(Ensemble(build, seeds, "vmap"), x, p.lr),
             "solo": solo_step(build, seeds, x, p.lr, channels_last=False),
             "solo_cl": solo_step(build, seeds, x, p.lr, channels_last=True)}
    return {**time_steps(steps, repeats, budget), "flops": flops}


def profile_ms(step: Step, steps: int) -> tuple[float, float, float, float]:
    """torch.profiler over ``steps`` steps: per step, ms of (convolution kernels, the optimizer's ``zero_grad`` and
    ``step`` with everything they call, every other operator's own time, the wall time of the profiled steps).
    Operators' self times, so nothing is counted twice; what is left of the wall time ran outside any operator."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_KERNELS)
    opt = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer."))
    inside = sum(e.self_cpu_time_total for e in events)
    return conv / 1e3 / steps, opt / 1e3 / steps, (inside - conv - opt) / 1e3 / steps, wall * 1e3 / steps


def conv_layer_ms(p: Preset, x: torch.Tensor, width: int, r: int, repeats: int) -> dict[str, float]:
    """ms per step that the convolution kernels of each layer take for r replicates (forward + weight/input
    gradients as the training step computes them), timed alone on channels_last tensors."""
    torch.manual_seed(0)
    module = conv_builder(p, width)().to(memory_format=torch.channels_last)
    h = x.contiguous(memory_format=torch.channels_last)
    out = {}
    for name in ConvIdentity.weight_layers:
        conv = module.get_submodule(name)
        inp = h.detach().requires_grad_(name != "hidden")  # the first layer's input gradient is never needed
        o = conv(inp)
        grad = torch.ones_like(o)

        def fwd_bwd(conv=conv, inp=inp, grad=grad) -> None:
            o = conv(inp)
            o.backward(grad)

        out[name] = 1e3 * r * time_steps({name: fwd_bwd}, repeats, 0.1)[name]
        h = o.detach()
    return out


# -- (c): the MLP -----------------------------------------------------------------------------------------------
class SequentialMLP(Replica):
    """The MLP family's 1 -> 32 -> w -> 1 linear chain as a plain module, for the generic Ensemble."""

    weight_layers = ("net.0", "net.1", "net.2")

    def __init__(self, width: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Linear(hidden, width), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp_case(width: int, r: int, repeats: int, budget: float, with_loop: bool) -> dict[str, float]:
    x = integers(MLP_N).x
    seeds = seeds_of(r)
    steps = {"hand": ensemble_step(build_mlp(width, seeds), x, 1e-3),
             "vmap": ensemble_step(Ensemble(lambda: SequentialMLP(width), seeds, "vmap"), x, 1e-3)}
    if with_loop:
        steps["loop"] = ensemble_step(Ensemble(lambda: SequentialMLP(width), seeds, "loop"), x, 1e-3)
    return time_steps(steps, repeats, budget)


# -- (d): a real job --------------------------------------------------------------------------------------------

def real_job(width: int, extra: list[str]) -> tuple[float, dict[str, float]]:
    """``python run.py experiment=conv_sweep width=W`` into a temporary results dir: (process wall seconds,
    the timing keys of its results file's metadata)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(REPO_ROOT / "run.py"), f"experiment={PRESET}", f"width={width}", *extra,
               f"results_dir={tmp}", f"hydra.sweep.dir={tmp}/hydra_multi", f"hydra.run.dir={tmp}/hydra"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                              env={**os.environ, "HYDRA_FULL_ERROR": "1"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        files = sorted((Path(tmp) / "runs").rglob("*.parquet"))
        if len(files) != 1:
            raise RuntimeError(f"expected one results file from {' '.join(cmd)}, found {len(files)}")
        meta = pq.read_schema(files[0]).metadata or {}
        return wall, {k: float(meta[k.encode()]) for k in ("wall_time_s", "train_seconds", "metric_seconds",
                                                           "null_seconds")}


# -- the table --------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="tries of every step timing; the fastest is reported")
    parser.add_argument("--budget", type=float, default=0.4, help="seconds of steps per try and variant (about)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one try: checks the script end to end (the tests run this), measures nothing")
    args = parser.parse_args()
    torch.set_num_threads(available_cores())  # what run.py gives a job under the basic launcher
    tune_allocator()                          # as experiments.train.train does before training
    p = read_preset()
    flop_w, flop_r, mlp_widths, mlp_rs, mlp_loop_r = FLOP_W, FLOP_R, MLP_WIDTHS, MLP_RS, MLP_LOOP_R
    job_extra: list[str] = []
    if args.smoke:
        p = Preset((4, 8), 2, 16, 8, 4, p.activation, p.lr, 3, 1)
        flop_w, flop_r, mlp_widths, mlp_rs, mlp_loop_r = 8, 2, (8,), (4, 8), 4
        job_extra = ["replicates=2", "epochs=3", "null_samples=4", "data.n_train=16", "data.n_eval=8",
                     "model.hidden=4"]
        args.repeats, args.budget = 1, 0.01
    x = digits(p.n_train, p.n_eval).x

    started, load_before = time.time(), load()
    rows: list[tuple[str, str, str, str]] = []

    # (a)
    peak = matmul_gflops()
    flops, sec = flop_rate(p, x, flop_w, flop_r, args.repeats, args.budget)
    pct = 100 * flops / sec / 1e9 / peak
    rows.append((f"(a) conv Ensemble (loop) training, w={flop_w}, R={flop_r}, N={p.n_train} 8x8 images: FLOPs per "
                 "step (fwd+bwd), step time, rate", f"{flops / 1e9:.2f} GFLOP, {1e3 * sec:.0f} ms, "
                 f"{flops / sec / 1e9:.1f} GFLOP/s", "", ""))
    rows.append(("(a) 2048x2048 fp32 matmul, same threads", f"{peak:.1f} GFLOP/s", "", ""))
    rows.append(("(a) training / matmul", f"**{pct:.0f}%**", f">= {TARGETS['peak']:.0f}%",
                 verdict(pct >= TARGETS["peak"])))

    # (b)
    per_width = {w: conv_width(p, x, w, args.repeats, args.budget) for w in p.widths}
    for w, t in per_width.items():
        solo = min(t["solo"], t["solo_cl"])
        ratio, vmap_ratio = solo / t["loop"], solo / t["vmap"]
        target = TARGETS["w8"] if w == 8 else TARGETS["any"]
        rate = 100 * t["flops"] / t["loop"] / 1e9 / peak
        rows.append((f"(b) w={w}, R={p.replicates}: training step, Ensemble (loop) vs {p.replicates} solo modules",
                     f"Ensemble {1e3 * t['loop']:.1f} ms ({rate:.0f}% of matmul); solo loop "
                     f"{1e3 * solo:.1f} ms (NCHW {1e3 * t['solo']:.1f}, channels_last {1e3 * t['solo_cl']:.1f}); "
                     f"vmap {1e3 * t['vmap']:.1f} ms. Speed-up over the solo loop: Ensemble **{ratio:.2f}x**, vmap "
                     f"{vmap_ratio:.2f}x",
                     f">= {target:.1f}x", verdict(ratio >= target)))
    w8 = 8 if 8 in p.widths else p.widths[0]
    build, seeds = conv_builder(p, w8), seeds_of(p.replicates)
    prof_steps = 1 if args.smoke else 5
    ens = profile_ms(ensemble_step(Ensemble(build, seeds, "loop"), x, p.lr), prof_steps)
    solo = profile_ms(solo_step(build, seeds, x, p.lr, channels_last=True), prof_steps)
    layers = conv_layer_ms(p, x, w8, p.replicates, args.repeats)
    t8 = per_width[w8]
    for name, (conv, opt, other, wall) in (("Ensemble (loop)", ens), ("solo loop, channels_last", solo)):
        rest = max(wall - conv - opt - other, 0.0)
        rows.append((f"(b) w={w8}: where a step goes, {name} (torch.profiler, ms per step)",
                     f"convolution kernels {conv:.1f} ({100 * conv / wall:.0f}%), optimizer {opt:.1f}, other "
                     f"operators {other:.1f}, outside operators (Python, autograd engine) {rest:.1f}; "
                     f"{wall:.1f} profiled", "", ""))
    bound = sum(layers.values())
    rows.append((f"(b) w={w8}: the convolutions alone, {p.replicates} x one replicate's fwd+bwd per layer (ms)",
                 ", ".join(f"{k} {v:.1f}" for k, v in layers.items()) + f": {bound:.1f} ms, so no loop of these "
                 f"kernels beats {1e3 * min(t8['solo'], t8['solo_cl']) / bound:.2f}x the solo loop", "", ""))

    # (c)
    for w in mlp_widths:
        for r in mlp_rs:
            t = mlp_case(w, r, args.repeats, args.budget, with_loop=(r == mlp_loop_r))
            loop = f", Ensemble loop {1e3 * t['loop']:.1f} ms" if "loop" in t else ""
            ratio = t["vmap"] / t["hand"]
            rows.append((f"(c) MLP w={w}, R={r}: hand-written batched path (build_mlp) vs generic Ensemble",
                         f"hand {1e3 * t['hand']:.1f} ms, Ensemble vmap {1e3 * t['vmap']:.1f} ms{loop}: hand "
                         f"**{ratio:.2f}x** faster", f">= {TARGETS['mlp']:.1f}x", verdict(ratio >= TARGETS["mlp"])))

    # (d)
    job_w = max(p.widths)
    wall, meta = real_job(job_w, job_extra)
    imports = import_seconds()
    run = meta["wall_time_s"]
    metric, null = 100 * meta["metric_seconds"] / run, 100 * meta["null_seconds"] / run
    passes = p.epochs // p.log_every + 1 + (p.epochs % p.log_every != 0)
    rows.append((f"(d) `run.py experiment={PRESET} width={job_w}` ({p.epochs} epochs, R={p.replicates}, {passes} "
                 "metric passes): process wall time",
                 f"{wall:.1f} s = {run:.1f} s in the run ({meta['train_seconds']:.1f} s training loop, metric passes "
                 f"included; metrics {meta['metric_seconds']:.1f} s; null "
                 f"{meta['null_seconds']:.1f} s) + {wall - run:.1f} s outside it: process start-up, Hydra, writing "
                 f"results (a bare `import torch, torch._dynamo` takes {imports:.1f} s)", "", ""))
    rows.append((f"(d) metric share of the run (of the whole process: {100 * meta['metric_seconds'] / wall:.0f}%)",
                 f"**{metric:.0f}%**", f"<= {TARGETS['metric']:.0f}%", verdict(metric <= TARGETS["metric"])))
    rows.append(("(d) null share of the run", f"{null:.0f}%", "", ""))

    print(f"Machine: {machine()}")
    print(f"Preset {PRESET}: widths {p.widths}, R={p.replicates}, N={p.n_train} training images, hidden={p.hidden}, "
          f"activation {p.activation}, {p.epochs} epochs; steps best of {args.repeats}; load average before "
          f"{load_before}, after {load()}; benchmark took {time.time() - started:.0f} s")
    print()
    print_table(("measurement", "result", "target", "met"), rows)


if __name__ == "__main__":
    main()
