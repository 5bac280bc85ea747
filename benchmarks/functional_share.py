"""What share of a sweep's run time the functional metrics take, at each sweep's largest width, as a markdown table.

Why it exists: the functional metrics (``experiments/functional.py``: mean ablation, compensated ablation and
held-out R² of every unit of every studied layer, for all replicates) are w forward passes of the layers after
the studied one, at every metric epoch and for the null's first models. Issue 14 bounds them at 25% of a run's
time at the widest width of each sweep, where they cost most. This script runs exactly that job of every sweep
preset: the preset as ``make reproduce`` runs it, at its largest swept width, once per value of its other swept
axes (blocks, data sets), through ``experiments.experiment.run`` into a temporary results folder, and reads the
times each run records in its metadata: ``wall_time_s`` (the whole job: data, training, metrics, nulls,
writing), ``functional_seconds`` (the functional metrics during training) and ``null_functional_seconds``
(those of the untrained-model null). The share is (functional + null functional) / wall.

Process start-up (imports) is not in ``wall_time_s``; a sweep pays it once per process, so the shares here are
upper bounds of the share in a whole ``make reproduce``. Nothing is compared across runs, so load from other
processes changes every share's numerator and denominator alike.

Run:  python benchmarks/functional_share.py           (about 4 minutes on 2 cores)
      python benchmarks/functional_share.py mlp_sweep conv_sweep    (only these presets)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from machine_info import machine  # benchmarks/machine_info.py, beside this script
from pyarrow import parquet

from experiments.config import CONF_DIR
from experiments.experiment import run

PRESETS = ["mlp_sweep", "mlp_relu", "conv_sweep", "conv_relu_sweep", "resnet_sweep", "mnist1d_mlp_sweep",
           "mnist1d_cnn_sweep", "autoencoder_sweep", "mnist1d_resnet_sweep"]
TARGET = 0.25


def widest_jobs(preset: str) -> list[list[str]]:
    """The overrides of the preset's jobs at its largest swept width: one per combination of its other axes.
    The sweep is read from the composed config (a preset may inherit it through its defaults)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params or {})
    if "width" not in params:
        raise SystemExit(f"error: experiment={preset} sweeps no width (hydra.sweeper.params.width)")
    widest = max(int(w) for w in str(params.pop("width")).split(","))
    axes = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    return [[f"experiment={preset}", f"width={widest}", *combo] for combo in itertools.product(*axes)]


def measure(overrides: list[str], root: Path) -> dict[str, float]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, f"results_dir={root}", "progress=false"])
    run(cfg, root)
    (path,) = sorted((root / "runs").rglob("*.parquet"))
    raw = {k.decode(): v.decode() for k, v in parquet.read_schema(path).metadata.items()}
    return {key: float(raw[key]) for key in ("wall_time_s", "train_seconds", "metric_seconds",
                                             "functional_seconds", "null_seconds", "null_functional_seconds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", default=PRESETS, help="presets to measure (default: every sweep)")
    args = parser.parse_args(argv)
    unknown = [p for p in args.presets if p not in PRESETS]
    if unknown:
        print(f"error: not a sweep preset: {', '.join(unknown)} (known: {', '.join(PRESETS)})", file=sys.stderr)
        return 2
    print(machine())
    print()
    header = ("| job | wall s | training s | functional s | null s | null functional s | share |\n"
              "|---|---:|---:|---:|---:|---:|---:|")
    print(header)
    worst = 0.0
    t0 = time.perf_counter()
    for preset in args.presets:
        for overrides in widest_jobs(preset):
            with tempfile.TemporaryDirectory() as tmp:
                m = measure(overrides, Path(tmp))
            share = (m["functional_seconds"] + m["null_functional_seconds"]) / m["wall_time_s"]
            worst = max(worst, share)
            job = " ".join(overrides).replace("experiment=", "")
            print(f"| {job} | {m['wall_time_s']:.1f} | {m['train_seconds']:.1f} | {m['functional_seconds']:.1f} | "
                  f"{m['null_seconds']:.1f} | {m['null_functional_seconds']:.1f} | {share:.1%} |", flush=True)
    print()
    verdict = "within" if worst <= TARGET else "OVER"
    print(f"largest share {worst:.1%}: {verdict} the {TARGET:.0%} target "
          f"({time.perf_counter() - t0:.0f} s for this benchmark)")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
