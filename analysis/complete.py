"""Which results may replace the committed figures and tables: only complete presets (issue 21).

``make reproduce`` runs :data:`REPRODUCED` (the preset, and the sweep the Makefile gives the source). The committed
``results/figures`` and ``results/tables`` are built from them; a user's own small runs (``python run.py -m
width=8,32,128 epochs=5``, a shrunk preset, a quick try) must not overwrite them. :func:`missing` lists what the
results under a root lack against every preset's declaration (its swept values, read from the preset's own
``hydra.sweeper.params`` through Hydra's compose API, and its ``replicates``); ``analysis.figures`` writes to the
committed folders only when nothing is missing, and to a scratch folder otherwise.
"""

from __future__ import annotations

import itertools
from functools import cache

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.config import CONF_DIR

# The presets ``make reproduce`` runs, with the sweep the Makefile passes on the command line where the preset has
# none of its own (the source reproduction: ``python run.py -m width=8,32,128``).
REPRODUCED = {
    "source": {"width": "8,32,128"}, "mlp_sweep": {}, "mlp_relu": {}, "conv_sweep": {}, "conv_relu_sweep": {},
    "resnet_sweep": {}, "mnist1d_baselines": {}, "mnist1d_mlp_sweep": {}, "mnist1d_cnn_sweep": {},
    "autoencoder_sweep": {}, "mnist1d_resnet_sweep": {}, "compression": {},
}
# A swept config key -> the results column that records it.
COLUMN_OF = {"width": "width", "model.block": "block", "data": "data", "model": "model"}


@cache
def declared(preset: str) -> tuple[int, tuple[dict[str, str], ...]]:
    """(replicates, every combination of the preset's swept values as {results column: value})."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params) if cfg.hydra.sweeper.params else {}
    params = {**params, **REPRODUCED.get(preset, {})}
    axes = [[(COLUMN_OF[k], v.strip()) for v in str(values).split(",")] for k, values in params.items()
            if k in COLUMN_OF]
    combos = tuple(dict(c) for c in itertools.product(*axes)) if axes else ({},)
    return int(cfg.replicates), combos


def missing(df: pd.DataFrame) -> list[str]:
    """What the results lack against :data:`REPRODUCED`: one line per preset that is absent, or per declared
    combination with fewer replicates than the preset declares (empty: every preset is complete)."""
    trained = df[df["kind"].isin(["trained", "compressed"])] if not df.empty else df
    out = []
    for preset in REPRODUCED:
        rows = trained[trained["experiment"] == preset] if not trained.empty else trained
        if rows.empty:
            out.append(f"{preset}: no runs")
            continue
        if preset == "compression":
            continue  # its sources are other presets' runs; its own rows exist or not
        replicates, combos = declared(preset)
        seeds = rows[["width", "block", "data", "model", "run_id", "seed"]].drop_duplicates().astype(
            {"width": str})
        for combo in combos:
            keep = pd.Series(True, index=seeds.index)
            for col, value in combo.items():
                keep &= seeds[col].astype(str) == value
            n = seeds.loc[keep, "seed"].nunique()
            if n < replicates:
                where = ", ".join(f"{k}={v}" for k, v in combo.items()) or "its run"
                out.append(f"{preset}: {where} has {n} of {replicates} seeds")
    return out
