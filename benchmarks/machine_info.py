"""What every benchmark prints first: the machine its numbers belong to, and how busy it was."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from experiments.config import REPO_ROOT, available_cores


def machine() -> str:
    """CPU model, cores, torch version and threads: the numbers below only mean something with these."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    return (f"{model}; {available_cores()} usable cores (os.cpu_count {os.cpu_count()}); torch {torch.__version__}; "
            f"{torch.get_num_threads()} torch threads; Python {platform.python_version()}")


def load() -> str:
    """The load average (1, 5, 15 minutes): other processes only ever add time to a measurement."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def import_seconds(modules: Sequence[str] = ()) -> float:
    """What a fresh process spends importing torch, torch._dynamo (which the first torch.optim.Adam imports) and
    ``modules``: the start-up every run pays once, before any step."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import " + ", ".join(["torch", "torch._dynamo", *modules])], check=True,
                   cwd=REPO_ROOT)
    return time.perf_counter() - t0


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A markdown table on stdout."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def step_parser(doc: str, budget: float) -> argparse.ArgumentParser:
    """The options every step-timing benchmark takes: rounds, seconds per round, the MNIST-1D cache, --smoke."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds of every timing; the fastest is reported")
    parser.add_argument("--budget", type=float, default=budget, help="seconds of steps per round and case (about)")
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "results" / "cache"),
                        help="where the generated MNIST-1D arrays are cached (the presets' default)")
    parser.add_argument("--smoke", action="store_true",
                        help="R=2, one round: checks the script end to end (for tests), measures nothing")
    return parser
