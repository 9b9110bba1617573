"""The leaderboard at a glance: one line per method, one column per dataset, from a report's leaderboard.csv.

``crlbench report`` writes the full tables (every score, intervals, the degenerate runs and why); this prints the
compact view that docs/leaderboard.md and the README quote, so that every number there comes from the records
through the report: per method and dataset the mean over seeds of each chosen score, printed at the report's own
precision (crlbench.reports.numbers.interval_places), with the report's marks: **bold** the best method (reference
rows excluded), † a Holm-adjusted paired Wilcoxon p < 0.05 against the report's comparison method, § k/n the seeds
a degeneracy check flags on that score, ‡ k the seeds not converged on their scores, (k seeds) a method with fewer
finished seeds than the dataset's most (the report never bolds it), – a dataset the method did not run on.
Reference rows print in italics below the methods; those without any of the chosen scores (copying the input and
the mean image stand for reconstructions, not representations) are left out.

Run: ``python benchmarks/leaderboard_summary.py reports/standard [--score dci@reg.disentanglement --score
mcc@pearson.mcc] [--out FILE]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from crlbench.reports.numbers import fixed, interval_places

SCORES = ("dci@reg.disentanglement", "mcc@pearson.mcc")
SHORT = {"dci@reg.disentanglement": "DCI disentanglement", "mcc@pearson.mcc": "MCC"}


def load_leaderboard(report: Path) -> pd.DataFrame:
    """The report's leaderboard.csv (one row per dataset, method and score)."""
    path = report / "leaderboard.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: no leaderboard.csv (write the report with `crlbench report` first)")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def score_text(row: pd.Series) -> str:
    """One score's mean with the report's marks: ``**0.992** †``, ``0.27 § 2/8``."""
    places = interval_places(row["mean"], row["ci_low"], row["ci_high"])
    text = fixed(row["mean"], places)
    if str(row["best"]) == "True":
        text = f"**{text}**"
    if str(row["significant"]) == "True":
        text += " †"
    if row["flagged"] > 0:
        text += f" § {int(row['flagged'])}/{int(row['n_ok'])}"
    return text


def cell_text(rows: pd.DataFrame, scores: tuple[str, ...], seeds: int) -> str:
    """One method on one dataset: its scores joined by `` / ``, ‡ k for its unconverged seeds and its number of
    seeds when it has fewer than ``seeds``."""
    by_score = {row["metric"]: row for _, row in rows.iterrows()}
    parts = [score_text(by_score[score]) if score in by_score else "n/a" for score in scores]
    text = " / ".join(parts)
    unconverged = int(rows["seeds_unconverged"].fillna(0).max()) if "seeds_unconverged" in rows else 0
    text = f"{text} ‡ {unconverged}" if unconverged else text
    finished = int(rows["n_ok"].max())
    return f"{text} ({finished} seeds)" if finished < seeds else text


def given_text(rows: pd.DataFrame, datasets: list[str]) -> str:
    """What a method receives besides the images; where it differs by dataset (CausalVAE's initial graph exists
    for Pendulum and Flow only), each value followed by the datasets it holds on."""
    given = rows.dropna(subset=["given"]).drop_duplicates("dataset").set_index("dataset")["given"]
    values = list(dict.fromkeys(given[dataset] for dataset in datasets if dataset in given.index))
    if len(values) <= 1:
        return values[0] if values else ""
    return "; ".join(f"{value} ({', '.join(d for d in datasets if given.get(d) == value)})" for value in values)


def summary(frame: pd.DataFrame, scores: tuple[str, ...] = SCORES) -> str:
    """The markdown table: methods in report order, then the reference rows in italics."""
    frame = frame[frame["metric"].isin(scores) & frame["mean"].notna()]
    datasets = list(dict.fromkeys(frame["dataset"]))
    labels = list(dict.fromkeys(frame["label"]))
    references = set(frame.loc[frame["reference"].astype(str) == "True", "label"])
    seeds = frame.groupby("dataset")["n_ok"].max()
    header = " / ".join(SHORT.get(score, score) for score in scores)
    lines = [f"| mean over seeds: {header} | given | " + " | ".join(datasets) + " |",
             "|---|---|" + "---|" * len(datasets)]
    for label in [label for label in labels if label not in references] + [label for label in labels
                                                                            if label in references]:
        rows = frame[frame["label"] == label]
        given = given_text(rows, datasets)
        cells = [cell_text(rows[rows["dataset"] == dataset], scores, seeds[dataset])
                 if (rows["dataset"] == dataset).any() else "–" for dataset in datasets]
        if label in references:
            lines.append(f"| *{label} (reference)* | *{given}* | " + " | ".join(f"*{cell}*" for cell in cells) + " |")
        else:
            lines.append(f"| {label} | {given} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a report folder (its leaderboard.csv)")
    parser.add_argument("--score", action="append", help="a score key (repeatable; default: DCI-D and MCC)")
    parser.add_argument("--out", type=Path, help="write the table here (default: stdout)")
    args = parser.parse_args(argv)
    text = summary(load_leaderboard(args.report), tuple(args.score or SCORES))
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
