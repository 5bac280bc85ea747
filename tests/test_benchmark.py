"""The benchmark scripts run end to end (at toy sizes: the numbers themselves are not asserted)."""

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


@pytest.mark.slow
def test_conv_ensemble_benchmark_prints_its_table():
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "conv_ensemble.py"), "--smoke"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| measurement | result | target | met |" in proc.stdout
    for label in ("(a) conv Ensemble (loop) training", "(a) 2048x2048 fp32 matmul", "(a) training / matmul",
                  "(b) w=4, R=2: training step", "(b) w=8, R=2: training step", "(b) w=8: where a step goes, Ensemble",
                  "(b) w=8: where a step goes, solo loop", "(b) w=8: the convolutions alone",
                  "(c) MLP w=8, R=4: hand-written batched path", "(c) MLP w=8, R=8: hand-written batched path",
                  "(d) `run.py experiment=conv_sweep width=8`", "(d) metric share of the run",
                  "(d) null share of the run"):
        assert label in proc.stdout, label
