"""Hydra entry point: ``python run.py -m width=8,32,128``. All logic lives in ``experiments``.

The launcher is picked on the command line (``-m hydra/launcher=joblib``, ``submitit_local``, ``slurm``);
this wrapper only decides how many torch threads a job gets and makes a failed job fail the sweep.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from experiments.config import ConfigError, check_group_overrides, check_jobs, default_threads
from experiments.experiment import digest, run

log = logging.getLogger("run")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job = hydra_cfg.job.override_dirname or "defaults"
    if cfg.threads is None:
        # Decided here, in the process that runs the job (a joblib/loky worker, a submitit job): the
        # launcher's share of the cores. run() validates it and applies it before any work.
        cfg.threads = default_threads(hydra_cfg.launcher if multirun else None)
    try:
        log.info("job %s: %s torch thread(s), launcher %s", job, cfg.threads,
                 str(hydra_cfg.launcher.get("_target_", "?")).rsplit(".", 1)[-1] if multirun else "none")
        table = digest(run(cfg))
        if table:
            print(f"{cfg.name}, width {cfg.width}: what it measured (mean over seeds)\n{table}", flush=True)
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
    problem = check_group_overrides(sys.argv[1:]) or check_jobs(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
