"""How fast this repository sweeps seeds, measured in one run on this machine, printed as a markdown table.

Why it exists: the design trains ``replicates`` seeds as one batched model per Hydra job instead of one
job per seed. This script checks that the batching pays off, and where the remaining time goes:

(a) seed-runs/s of the 3 x 100 sweep (widths 8, 32, 128; 100 epochs) as the repository runs it: one
    ``python run.py -m width=8,32,128 replicates=100`` process;
(b) the same 300 seed-runs as one Hydra job per (width, seed), basic launcher: 10 seeds per width are
    timed and extrapolated per job (per width) to 100 seeds, the process start-up counted once;
(c) GFLOP/s of ensemble training (w=128, R=1000, 100 epochs), matmul FLOPs of forward and backward
    counted with FlopCounterMode, against a 2048x2048 fp32 matmul timed in the same process;
(d) the share of a run's time spent on weight metrics (parquet metadata written by experiments.experiment).

Both sweeps use the same per-run settings (log_every=10, the same null_samples) and are run with
null_samples=0 and with the default 1000. (a) and (c) are the best of ``--repeats`` tries and (b) uses
per-width medians of its jobs, because this machine may be shared: other processes only ever add time.
The load average before and after is printed so that a noisy run can be recognised.

Run:  python benchmarks/sweep_throughput.py            (about 2-4 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import torch
from machine_info import load, machine  # benchmarks/machine_info.py, beside this script
from torch.utils.flop_counter import FlopCounterMode

from experiments.config import REPO_ROOT, available_cores
from experiments.data import integers
from experiments.metrics import weight_metrics
from experiments.models.mlp import build_mlp
from experiments.tasks import TASKS, per_replicate_mse
from experiments.train import make_optimizer, train, tune_allocator

WIDTHS = (8, 32, 128)
SEEDS = 100
EPOCHS = 100
LOG_EVERY = 10
SUBSET = 10  # seeds per width timed as one-job-per-seed
BIG_R, BIG_W = 1000, 128
TARGETS = {"ratio": 50.0, "peak": 35.0, "metric": 20.0}
HYDRA_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[HYDRA\]\s+#(\d+) : (.*)$")


def sweep(args: list[str], root: Path) -> tuple[float, str]:
    """Run ``python run.py -m ARGS`` into ``root``; return (wall seconds, stdout). Fails loudly on error."""
    cmd = [sys.executable, str(REPO_ROOT / "run.py"), "-m", *args, f"results_dir={root}",
           f"hydra.sweep.dir={root}/hydra_multi"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout + proc.stderr


def run_metadata(root: Path) -> list[dict[str, float]]:
    """The timing keys experiments.experiment writes into every results file's metadata."""
    out = []
    for path in sorted((root / "runs").rglob("*.parquet")):
        meta = pq.read_schema(path).metadata or {}
        out.append({k: float(meta[k.encode()]) for k in ("wall_time_s", "train_seconds", "metric_seconds",
                                                         "null_seconds")})
    return out


def best_of(repeats: int, measure):
    """The fastest of ``repeats`` tries (each in a fresh folder): noise from other processes only adds time."""
    results = [measure() for _ in range(repeats)]
    return min(results, key=lambda r: r[0])


def batched_sweep(null_samples: int, repeats: int) -> tuple[float, list[dict[str, float]]]:
    """(a): the whole 3 x 100 sweep as this repository runs it, one process, wall time measured whole."""
    def once() -> tuple[float, list[dict[str, float]]]:
        with tempfile.TemporaryDirectory() as tmp:
            wall, _ = sweep([f"width={','.join(map(str, WIDTHS))}", f"replicates={SEEDS}", f"epochs={EPOCHS}",
                             f"log_every={LOG_EVERY}", f"null_samples={null_samples}"], Path(tmp))
            return wall, run_metadata(Path(tmp))
    return best_of(repeats, once)


def per_seed_sweep(null_samples: int) -> tuple[float, float, dict[int, float]]:
    """(b): SUBSET seeds per width as one job each; returns (extrapolated s for 300 jobs, measured wall, s/job).

    Job k's duration is the time between Hydra's launch lines for jobs k and k+1, which includes
    Hydra's own per-job work (composing the job's config, its log folder). Job 0 (process warm-up)
    and the last job (process teardown) are left out of the per-width medians and counted once; the
    median, not the mean, so that a burst of load from another process does not inflate (b).
    """
    seeds = ",".join(str(10000 + s) for s in range(SUBSET))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        wall, out = sweep([f"width={','.join(map(str, WIDTHS))}", f"seed={seeds}", "replicates=1",
                           f"epochs={EPOCHS}", f"log_every={LOG_EVERY}", f"null_samples={null_samples}"], Path(tmp))
        t_end = t0 + wall
    starts, widths = {}, {}
    for line in out.splitlines():
        m = HYDRA_LINE.match(line)
        if m:
            k = int(m.group(2))
            starts[k] = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            widths[k] = int(re.search(r"width=(\d+)", m.group(3)).group(1))
    n = len(WIDTHS) * SUBSET
    if sorted(starts) != list(range(n)):
        raise RuntimeError("could not find every job's launch line in Hydra's output")
    durations: dict[int, list[float]] = {w: [] for w in WIDTHS}
    for k in range(1, n - 1):
        durations[widths[k]].append(starts[k + 1] - starts[k])
    per_job = {w: statistics.median(d) for w, d in durations.items()}
    head = starts[1] - t0                                       # start-up + job 0
    tail = max((t_end - starts[n - 1]) - per_job[widths[n - 1]], 0.0)  # teardown after the last job
    total = head + sum(SEEDS * per_job[w] for w in WIDTHS) - per_job[widths[0]] + tail
    return total, wall, per_job


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Matmul FLOPs of one training step (forward + backward), as FlopCounterMode counts them."""
    opt = make_optimizer(model.parameters_in_source_order(), 1e-3, model.replicates)
    with FlopCounterMode(display=False) as counter:
        opt.zero_grad(set_to_none=True)
        per_replicate_mse(model(x), y).sum().backward()
    opt.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def training_loop_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    """The step of experiments.train.train without metric logging: same optimiser, loss and allocator."""
    tune_allocator()
    opt = make_optimizer(model.parameters_in_source_order(), 1e-3, model.replicates)
    t0 = time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        losses = per_replicate_mse(model(x), y)
        losses.sum().backward()
        opt.step()
        torch.isfinite(losses.detach()).cpu()
    return time.perf_counter() - t0


def matmul_gflops(n: int = 2048, tries: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def ensemble(repeats: int) -> dict[str, float]:
    """(c) and (d) for w=128, R=1000: clean training GFLOP/s, and the real train() run's metric share."""
    data = integers(100)
    x, y = data.x, data.x
    seeds = list(range(10000, 10000 + BIG_R))
    flops = step_flops(build_mlp(BIG_W, seeds), x, y)
    loop = min(training_loop_seconds(build_mlp(BIG_W, seeds), x, y, EPOCHS) for _ in range(repeats))
    model = build_mlp(BIG_W, seeds)
    t0 = time.perf_counter()
    result = train(model, data, TASKS["identity"], seeds, EPOCHS, 1e-3, LOG_EVERY)
    wall = time.perf_counter() - t0
    return {"flops": flops, "loop": loop, "gflops": flops * EPOCHS / loop / 1e9, "train_wall": wall,
            "metric": result.metric_seconds, "logs": EPOCHS // LOG_EVERY + 1}


def top_ops(fn, rows: int = 8) -> str:
    """torch.profiler's busiest operators (self CPU time) while ``fn`` runs: where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return "\n".join(line for line in table.splitlines() if line.strip() and not line.startswith("USDT"))


def where_the_time_goes() -> str:
    """Top operators of one metric pass (all layers) and of one training step at w=128, R=1000."""
    data = integers(100)
    x, y = data.x, data.x
    seeds = list(range(10000, 10000 + BIG_R))
    model = build_mlp(BIG_W, seeds)
    opt = make_optimizer(model.parameters_in_source_order(), 1e-3, BIG_R)

    def metrics() -> None:
        with torch.no_grad():
            for w in model.weights.values():
                weight_metrics(w.detach())

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        per_replicate_mse(model(x), y).sum().backward()
        opt.step()

    return (f"One metric pass (all layers), w={BIG_W}, R={BIG_R}:\n{top_ops(metrics)}\n\n"
            f"One training step, w={BIG_W}, R={BIG_R}:\n{top_ops(step)}")


def metric_share(meta: list[dict[str, float]]) -> tuple[float, float]:
    """Metric seconds / run wall time, and (metric + null) / wall, summed over the runs of a sweep."""
    wall = sum(m["wall_time_s"] for m in meta)
    metric = sum(m["metric_seconds"] for m in meta)
    null = sum(m["null_seconds"] for m in meta)
    return 100 * metric / wall, 100 * (metric + null) / wall


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="tries of (a) and (c); the fastest is reported")
    parser.add_argument("--null-samples", type=int, nargs="+", default=[0, 1000])
    parser.add_argument("--no-profile", action="store_true", help="skip the top-operator tables")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one try: checks the script end to end (the tests run this), measures nothing")
    args = parser.parse_args()
    if args.smoke:
        global SEEDS, EPOCHS, SUBSET, BIG_R
        SEEDS, EPOCHS, SUBSET, BIG_R = 4, 10, 2, 20
        args.repeats, args.null_samples, args.no_profile = 1, [0], True
    torch.set_num_threads(available_cores())  # what run.py gives a job under the basic launcher

    started, load_before = time.time(), load()
    rows = []
    shares = {}
    for null in args.null_samples:
        a_wall, a_meta = batched_sweep(null, args.repeats)
        b_total, b_wall, per_job = per_seed_sweep(null)
        a_rate, b_rate = len(WIDTHS) * SEEDS / a_wall, len(WIDTHS) * SEEDS / b_total
        in_runs = sum(m["wall_time_s"] for m in a_meta)
        rows.append((f"(a) batched sweep, null_samples={null}: one process, 3 jobs x {SEEDS} replicates",
                     f"{a_wall:.1f} s wall ({in_runs:.1f} s inside the 3 runs, {a_wall - in_runs:.1f} s process "
                     f"start-up, imports, Hydra), **{a_rate:.1f} seed-runs/s**", "", ""))
        jobs = ", ".join(f"w={w}: {t:.2f} s" for w, t in per_job.items())
        rows.append((f"(b) one job per seed, null_samples={null}: {len(WIDTHS) * SUBSET} jobs timed "
                     f"({b_wall:.1f} s), extrapolated to 300", f"median per job {jobs}; {b_total:.1f} s, "
                     f"**{b_rate:.2f} seed-runs/s**", "", ""))
        ratio = b_total / a_wall
        rows.append((f"(a)/(b) speed-up, null_samples={null}", f"**{ratio:.1f}x**", f">= {TARGETS['ratio']:.0f}x",
                     verdict(ratio >= TARGETS["ratio"])))
        shares[null] = metric_share(a_meta)

    big = ensemble(args.repeats)
    peak = matmul_gflops()
    pct = 100 * big["gflops"] / peak
    rows.append((f"(c) training w={BIG_W}, R={BIG_R}, {EPOCHS} epochs: matmul FLOPs per step (fwd+bwd)",
                 f"{big['flops'] / 1e9:.3f} GFLOP", "", ""))
    rows.append(("(c) training loop time (no metrics) / achieved", f"{big['loop']:.2f} s / **{big['gflops']:.1f} "
                 "GFLOP/s**", "", ""))
    rows.append(("(c) 2048x2048 fp32 matmul, same threads", f"{peak:.1f} GFLOP/s", "", ""))
    rows.append(("(c) training / matmul", f"**{pct:.0f}%**", f">= {TARGETS['peak']:.0f}%",
                 verdict(pct >= TARGETS["peak"])))
    for null, (metric, with_null) in shares.items():
        rows.append((f"(d) metric share of run time, (a) sweep, null_samples={null} (metric + null in brackets)",
                     f"**{metric:.0f}%** ({with_null:.0f}%)", f"<= {TARGETS['metric']:.0f}%",
                     verdict(metric <= TARGETS["metric"])))
    big_share = 100 * big["metric"] / big["train_wall"]
    rows.append((f"(d) metric share, train() at w={BIG_W}, R={BIG_R}, log_every={LOG_EVERY} ({big['logs']} metric "
                 f"passes: {big['metric']:.2f} of {big['train_wall']:.2f} s)", f"**{big_share:.0f}%**",
                 f"<= {TARGETS['metric']:.0f}%", verdict(big_share <= TARGETS["metric"])))
    profile = "" if args.no_profile else where_the_time_goes()

    print(f"Machine: {machine()}")
    print(f"Per-run settings: {EPOCHS} epochs, log_every={LOG_EVERY}, widths {WIDTHS}, {SEEDS} seeds per width; "
          f"(a) and (c) best of {args.repeats}; load average before {load_before}, after {load()}; "
          f"benchmark took {time.time() - started:.0f} s")
    print()
    print("| measurement | result | target | met |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if profile:
        print()
        print("```")
        print(profile)
        print("```")


if __name__ == "__main__":
    main()
