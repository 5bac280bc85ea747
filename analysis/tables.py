"""Tables computed from the tidy results: plain DataFrames, written as markdown/CSV by ``figures``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# What the source printed (4 decimals), seed 10000, 100 epochs.
SOURCE_PRINTED = pd.DataFrame(
    {"width": [8, 32, 128], "loss": [0.0354, 0.0327, 0.0337], "min_pair_l1": [0.0894, 0.0796, 0.0661]}
).set_index("width")
SOURCE_SEED = 10000


def final_epoch(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at each run's last logged epoch (trained rows only)."""
    trained = df[df["kind"] == "trained"]
    last = trained.groupby("run_id")["epoch"].transform("max")
    return trained[trained["epoch"] == last]


def source_table(df: pd.DataFrame, experiment: str = "source") -> pd.DataFrame:
    """Figure/table 1: this repository's seed-10000 values next to the printed ones, per source width."""
    rows = final_epoch(df[(df["experiment"] == experiment) & (df["seed"] == SOURCE_SEED)])
    wanted = ["model/loss", "bottleneck/min_pair_l1", "bottleneck/min_pair_i", "bottleneck/min_pair_j"]
    rows = rows[(rows["layer"].astype(str) + "/" + rows["metric"].astype(str)).isin(wanted)]
    ours = rows.pivot_table(index="width", columns="metric", values="value", aggfunc="first")
    ours = ours.reindex(index=SOURCE_PRINTED.index, columns=[w.split("/")[1] for w in wanted])
    table = pd.DataFrame({
        "loss (source)": SOURCE_PRINTED["loss"],
        "loss (ours)": ours["loss"],
        "min_pair_l1 (source)": SOURCE_PRINTED["min_pair_l1"],
        "min_pair_l1 (ours)": ours["min_pair_l1"],
        "closest pair (ours)": [
            f"({int(i)}, {int(j)})" if pd.notna(i) else ""
            for i, j in zip(ours["min_pair_i"], ours["min_pair_j"], strict=True)],
    })
    table["matches to 4 d.p."] = (
        (table["loss (ours)"].round(4) == table["loss (source)"])
        & (table["min_pair_l1 (ours)"].round(4) == table["min_pair_l1 (source)"]))
    return table


def to_markdown(table: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub markdown table without the optional ``tabulate`` dependency."""
    frame = table.reset_index()

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else format(v, floatfmt)
        return str(v)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def write_csv_and_markdown(table: pd.DataFrame, out_dir: str | Path, name: str, markdown: str) -> list[Path]:
    """Write ``<name>.csv`` (full precision) and ``<name>.md`` (``markdown``) into ``out_dir``; returns both."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    table.to_csv(csv, index=False)
    md.write_text(markdown)
    return [csv, md]
