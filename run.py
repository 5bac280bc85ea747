"""Hydra entry point: ``python run.py -m width=8,32,128``. All logic lives in ``experiments``.

The launcher is picked on the command line (``-m hydra/launcher=joblib``, ``submitit_local``, ``slurm``);
this wrapper only decides how many torch threads a job gets and makes a failed job fail the sweep.
"""

from __future__ import annotations

import logging
import sys

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from experiments.config import ConfigError, check_group_overrides, default_threads, validate
from experiments.experiment import run

log = logging.getLogger("run")


def limit_threads(cfg: DictConfig, multirun: bool) -> int:
    """Fix this job's torch thread count before any work: ``threads`` if given, else the launcher's share.

    Set here, in the process that runs the job (a joblib/loky worker, a submitit job), because a
    thread count set in the launching process does not reach a fresh worker interpreter.
    """
    if cfg.threads is None:
        cfg.threads = default_threads(HydraConfig.get().launcher if multirun else None)
    validate(cfg)
    torch.set_num_threads(int(cfg.threads))
    return torch.get_num_threads()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job = hydra_cfg.job.override_dirname or "defaults"
    try:
        threads = limit_threads(cfg, multirun)
        log.info("job %s: %d torch thread(s), launcher %s", job, threads,
                 str(hydra_cfg.launcher.get("_target_", "?")).rsplit(".", 1)[-1] if multirun else "none")
        run(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        if multirun:
            # Raise, not exit: Hydra records this job as failed, runs the rest of the sweep, then exits 1.
            # A SystemExit would escape Hydra's job wrapper and, under joblib, abort the jobs in flight.
            raise
        sys.exit(2)
    except Exception:
        # A failed job's Hydra log can be empty; record why before the sweep reports the failure.
        log.exception("run failed: %s", job)
        raise
    return None


if __name__ == "__main__":
    problem = check_group_overrides(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
