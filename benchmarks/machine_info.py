"""What every benchmark prints first: the machine its numbers belong to, and how busy it was."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from experiments.config import available_cores


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
