"""The benchmark script runs end to end (at toy sizes: the numbers themselves are not asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from experiments.config import REPO_ROOT


@pytest.mark.slow
def test_benchmark_script_prints_its_table():
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "sweep_throughput.py"), "--smoke"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| measurement | result | target | met |" in proc.stdout
    for label in ("(a)/(b) speed-up", "(c) training / matmul", "(d) metric share"):
        assert label in proc.stdout
