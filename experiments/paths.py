"""Where the repository and its configs are: imported by every module that needs them, importing nothing else."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
