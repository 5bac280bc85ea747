"""Measured wall times of the README's commands, kept in ``results/tables/timings.csv`` for the report.

``make reproduce`` (and ``make time-test``) time each step in the shell and call
``python -m analysis.timings COMMAND STEPS_FILE``: STEPS_FILE holds one ``<seconds>\\t<step>`` line per step; the
rows of the same command on the same CPU and kernels (``ATEN_CPU_CAPABILITY``, else the CPU's native one) are
replaced, those of other machines kept, so the table can hold e.g. an AVX-512 and an AVX2 machine side by side.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from analysis.load import DEFAULT_ROOT

COLUMNS = ["command", "cpu", "capability", "step", "seconds"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def capability() -> str:
    chosen = os.environ.get("ATEN_CPU_CAPABILITY")
    if chosen:
        return chosen.lower()
    import torch

    return str(torch.backends.cpu.get_cpu_capability()).lower()


def record(command: str, steps: list[tuple[str, float]], path: Path = DEFAULT_ROOT / "tables" / "timings.csv") -> Path:
    cpu, cap = f"{cpu_name()}, {os.cpu_count()} cores", capability()
    new = pd.DataFrame([(command, cpu, cap, step, float(s)) for step, s in steps], columns=COLUMNS)
    if path.exists():
        old = pd.read_csv(path, dtype={"command": str, "cpu": str, "capability": str, "step": str})
        old = old[~((old["command"] == command) & (old["cpu"] == cpu) & (old["capability"] == cap))]
        new = pd.concat([old, new], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    new.sort_values(["command", "cpu", "capability"], kind="stable").to_csv(path, index=False)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m analysis.timings COMMAND STEPS_FILE", file=sys.stderr)
        return 2
    command, steps_file = args
    steps = []
    for line in Path(steps_file).read_text().splitlines():
        seconds, _, step = line.partition("\t")
        steps.append((step.strip(), float(seconds)))
    steps.append(("total", sum(s for _, s in steps)))
    print(f"timings: {record(command, steps)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
