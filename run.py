"""Hydra entry point: ``python run.py -m width=8,32,128``. All logic lives in ``experiments``."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.config import ConfigError, check_group_overrides, default_threads
from experiments.experiment import run

log = logging.getLogger("run")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    if cfg.threads is None:
        cfg.threads = default_threads(HydraConfig.get().launcher)
    try:
        run(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        # A failed job's Hydra log can be empty; record why before the sweep reports the failure.
        log.exception("run failed: %s", HydraConfig.get().job.override_dirname or "defaults")
        raise
    return None


if __name__ == "__main__":
    problem = check_group_overrides(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
