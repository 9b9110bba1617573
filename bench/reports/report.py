"""Leaderboards and the HTML report from finished cells.

:func:`write_report` turns the records of :func:`crlbench.suites.results.load_records` into one folder::

    leaderboard.md    a table per dataset, average ranks, failed cells, notes
    leaderboard.csv   long form: one row per (dataset, label, metric) with every number behind a cell
    leaderboard.tex   a booktabs table per dataset (needs \\usepackage{booktabs})
    index.html        self-contained: figures as base64 PNG, sortable tables, provenance footer
    figures/*.png

A table cell reads ``mean ± halfwidth`` of the 95% bootstrap interval over seeds (crlbench.reports.stats), with
``(ok/total)`` when some seeds failed or lack the score; the best mean of a column is bold (for the
score's direction), and ``†`` marks a Holm-corrected Wilcoxon p < 0.05 against the reference label.
Every table names what each method is given (labels, the true graph, an initial graph, pairs, or
nothing) and its latent size, and a training table states each method's batch size, the images it saw
against its reference run, and whether its schedule (warm-up) finished within the budget.
"""

from __future__ import annotations

import base64
import datetime
import importlib.metadata
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader

from crlbench.core.files import atomic_write
from crlbench.reports import figures, stats


DEFAULT_METRICS = [
    "dci@reg.disentanglement", "dci@reg.completeness", "dci@reg.informativeness_test", "mcc@pearson.mcc",
    "irs@dlib.irs", "mic@aligned.mic", "mic@aligned.tic", "counterfactual@probe.reconstruction_mse",
    "counterfactual@probe.counterfactual_mse", "counterfactual@probe.target_error",
    "counterfactual@probe.non_descendant_shift",
]
MARKER = "†"
ARROWS = {"max": "↑", "min": "↓"}
STATS_LIBRARIES = ("scipy", "statsmodels", "scikit-posthocs", "pandas", "matplotlib")


# --- the cell frame ------------------------------------------------------------------------------


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: dataset, label, model, seed, status, error, hash, then every score."""
    rows = []
    for record in records:
        cell, error = record["cell"], record.get("error")
        row = {"dataset": cell["dataset"], "label": cell.get("label") or cell["model"], "model": cell.get("model"),
               "seed": cell["seed"], "status": record["status"], "hash": record.get("hash"),
               "error": f"{error.get('type', 'Error')}: {error.get('message', '')}" if error else None}
        row.update(record.get("scores") or {})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in stats.ID_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return frame[list(stats.ID_COLUMNS) + stats.score_columns(frame)]


def check_records(records: list[dict]) -> None:
    """Raise ValueError naming the first record that lacks what the report reads."""
    if not records:
        raise ValueError("write_report: no records (did the suite write any result.json?)")
    for index, record in enumerate(records):
        where = record.get("_dir", f"records[{index}]")
        cell = record.get("cell")
        if not isinstance(cell, dict) or "status" not in record:
            raise ValueError(f"{where}: a record needs 'status' and a 'cell' object")
        missing = [key for key in ("dataset", "seed") if key not in cell]
        if missing or not (cell.get("label") or cell.get("model")):
            raise ValueError(f"{where}: cell lacks {missing or ['label or model']}")


def select_metrics(frame: pd.DataFrame, metrics: list[str] | None) -> list[str]:
    """The score columns to tabulate: the requested ones, or the defaults present (else every score)."""
    available = stats.score_columns(frame)
    if metrics is not None:
        unknown = [metric for metric in metrics if metric not in available]
        if unknown:
            raise ValueError(f"write_report: unknown metrics {unknown}; the records have {sorted(available)}")
        return list(metrics)
    present = [metric for metric in DEFAULT_METRICS if metric in available]
    return present or sorted(available)


def label_order(frame: pd.DataFrame, reference: str) -> list[str]:
    """The reference label first, then the others in order of appearance."""
    labels = list(dict.fromkeys(frame["label"]))
    return sorted(labels, key=lambda label: label != reference)


# --- tables --------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One leaderboard cell."""

    mean: float
    halfwidth: float
    n_ok: int
    n_total: int
    bold: bool = False
    significant: bool = False

    def text(self, plus_minus: str = "±") -> str:
        if not math.isfinite(self.mean):
            core = "–"
        else:
            core = f"{self.mean:.3f} {plus_minus} {self.halfwidth:.3f}"
        return core + (f" ({self.n_ok}/{self.n_total})" if self.n_ok < self.n_total else "")


@dataclass
class Table:
    """The leaderboard of one dataset: rows = labels, columns = metrics."""

    dataset: str
    labels: list[str]
    metrics: list[str]
    entries: dict[tuple[str, str], Entry]
    methods: dict[str, "MethodFacts"] = field(default_factory=dict)


@dataclass
class MethodFacts:
    """What one method (a label) was given and trained on for one dataset, from its ok records."""

    given: str = "not declared"
    latent_size: str = "?"
    batch_size: str = "?"
    images: str = "?"
    reference: str = "not declared"
    fraction: str = "–"
    schedule: str = "none"
    representation: str = "?"


def method_facts(records: list[dict]) -> dict[tuple[str, str], MethodFacts]:
    """Per (dataset, label), the supervision, latent size, budget and schedule its records state."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        if record.get("status") == "ok":
            cell = record["cell"]
            grouped.setdefault((cell["dataset"], cell.get("label") or cell["model"]), []).append(record)
    return {key: _facts(group) for key, group in grouped.items()}


def given_text(given: list[str] | None) -> str:
    if given is None:
        return "not declared"
    return ", ".join(given) if given else "nothing"


def _facts(records: list[dict]) -> MethodFacts:
    first = records[0]
    facts = MethodFacts(given=given_text(first.get("given")), latent_size=str(first.get("latent_size", "?")))
    budget = first["cell"].get("budget") or {}
    facts.batch_size = str(budget.get("batch_size", "?"))
    steps = (first.get("history") or {}).get("steps")
    fraction = first.get("budget_fraction")
    if fraction:
        facts.images = f"{fraction['images']:,}"
    elif steps is not None and budget.get("batch_size"):  # no reference declared: steps x batch, an upper bound
        facts.images = f"{steps * budget['batch_size']:,}"
    if fraction:
        reference = fraction["reference"]
        facts.reference = (f"{reference['epochs']} epochs" if reference.get("epochs") is not None
                           else f"{reference['steps']:,} steps of {reference.get('batch_size', '?')}")
        facts.fraction = f"{significant(100 * fraction['fraction'], 2)} %"
    schedules = [record.get("schedule") for record in records if record.get("schedule")]
    if schedules:
        finished = all(schedule.get("finished") for schedule in schedules)
        kind = schedules[0].get("kind", "?")
        facts.schedule = f"{kind}, " + ("finished" if finished else
                                        f"unfinished (full weight at step {schedules[0].get('full_weight_step')} "
                                        f"of {schedules[0].get('total_steps')})")
    representation = first.get("representation")
    if representation:
        facts.representation = f"{representation['kind']}: {representation['rule']} ({representation['codes']} codes)"
    return facts


def significant(value: float, digits: int) -> str:
    """``value`` with ``digits`` significant digits, without an exponent for ordinary magnitudes."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(digits - 1 - int(math.floor(math.log10(abs(value)))), 0)
    return f"{value:.{decimals}f}"


@dataclass
class ReportData:
    """Everything the three renderers show."""

    title: str
    reference: str
    metrics: list[str]
    tables: list[Table]
    ranks: list[stats.RankTest]
    failed: list[dict]
    notes: list[str]
    provenance: dict[str, str]
    figures: list[tuple[str, list[Path]]] = field(default_factory=list)


def merged_statistics(summary: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """The summary with the paired tests and the bold / significant flags of each cell."""
    merged = summary.merge(tests[["dataset", "label", "metric", "n_pairs", "p_value", "p_holm"]],
                           on=["dataset", "label", "metric"], how="left")
    signed = np.where(merged["direction"] == "max", merged["mean"], -merged["mean"])
    best = pd.Series(signed).groupby([merged["dataset"], merged["metric"]]).transform("max")
    merged["best"] = np.isclose(signed, best, rtol=0, atol=1e-12) & np.isfinite(signed)
    merged["significant"] = merged["p_holm"] < stats.ALPHA
    return merged


def build_tables(merged: pd.DataFrame, datasets: list[str], labels: list[str], metrics: list[str],
                 facts: dict[tuple[str, str], MethodFacts] | None = None) -> list[Table]:
    facts = facts or {}
    tables = []
    for dataset in datasets:
        rows = merged[merged["dataset"] == dataset]
        present = [label for label in labels if label in set(rows["label"])]
        entries = {(row.label, row.metric): Entry(row.mean, (row.ci_high - row.ci_low) / 2, int(row.n_ok),
                                                  int(row.n_total), bool(row.best), bool(row.significant))
                   for row in rows.itertuples()}
        methods = {label: facts.get((dataset, label), MethodFacts()) for label in present}
        tables.append(Table(dataset, present, metrics, entries, methods))
    return tables


def failed_cells(frame: pd.DataFrame) -> list[dict]:
    failed = frame[frame["status"] != "ok"]
    return [{"dataset": row.dataset, "label": row.label, "seed": row.seed, "hash": row.hash,
             "error": row.error or row.status} for row in failed.itertuples()]


def legend_lines(reference: str) -> list[str]:
    return [
        "Cells: mean ± half-width of the 95% bootstrap interval over seeds (BCa from 3 seeds; with 2 seeds "
        "the percentile interval, i.e. their range; with 1 seed no interval).",
        "(ok/total): seeds with a score out of all seeds, shown when some failed.",
        "Bold: best mean in the column; ↑ higher is better, ↓ lower is better.",
        f"{MARKER}: Wilcoxon signed-rank p < {stats.ALPHA} against {reference} on matched seeds, "
        "Holm-corrected over all comparisons of the dataset's table.",
        "given: what the method receives besides the images (labels: factor labels during training; true graph: "
        "the dataset's causal graph; initial graph: a starting graph it may change; pairs: before/after "
        "intervention pairs; nothing: unsupervised). latent: the number of latent dimensions it learns.",
    ]


# --- provenance ----------------------------------------------------------------------------------


def collect_provenance(records: list[dict], extra: dict | None) -> dict[str, str]:
    """Commits, library versions, hosts and dates of the records, plus ``extra`` and the report's own."""
    recorded = [record.get("provenance") or {} for record in records]
    versions: dict[str, set[str]] = {}
    for entry in recorded:
        for name, version in (entry.get("versions") or {}).items():
            versions.setdefault(name, set()).add(str(version))
    finished = sorted(str(entry["finished_at"]) for entry in recorded if entry.get("finished_at"))
    result = {
        "git commit(s)": _distinct(recorded, "git_commit"),
        "library versions": "; ".join(f"{name} {' / '.join(sorted(values))}"
                                      for name, values in sorted(versions.items())) or "unknown",
        "host(s)": _distinct(recorded, "host"),
        "cells finished": f"{finished[0]} to {finished[-1]}" if finished else "unknown",
        "report generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "report libraries": "; ".join(f"{name} {_version(name)}" for name in STATS_LIBRARIES),
    }
    for key, value in (extra or {}).items():
        result[str(key)] = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return result


def _distinct(entries: list[dict], key: str) -> str:
    """The distinct values of ``key`` across provenance entries, comma-separated, or "unknown"."""
    return ", ".join(sorted({str(entry[key]) for entry in entries if entry.get(key)})) or "unknown"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


# --- markdown ------------------------------------------------------------------------------------


def render_markdown(data: ReportData) -> str:
    lines = [f"# {data.title}", "", "## Leaderboard", ""]
    for table in data.tables:
        header = ["model", "given", "latent"] + [f"{metric} {ARROWS[stats.direction(metric)]}" for metric in table.metrics]
        lines += [f"### {table.dataset}", "", _md_row(header), _md_row(["---"] * 3 + ["---:"] * len(table.metrics))]
        for label in table.labels:
            method = table.methods.get(label, MethodFacts())
            lines.append(_md_row([label, method.given, method.latent_size]
                                 + [_md_cell(table.entries.get((label, metric))) for metric in table.metrics]))
        lines.append("")
    lines += [f"- {line}" for line in legend_lines(data.reference)] + [""]
    lines += _md_training(data.tables)
    lines += _md_ranks(data.ranks) + _md_failed(data.failed)
    if data.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in data.notes] + [""]
    lines += ["## Provenance", ""] + [f"- {key}: {value}" for key, value in data.provenance.items()] + [""]
    return "\n".join(lines)


TRAINING_COLUMNS = ("dataset", "model", "batch", "training images", "reference run", "fraction of reference",
                    "schedule", "evaluated representation")


def training_rows(tables: list[Table]) -> list[list[str]]:
    """Per dataset and method: batch size, images seen, the reference run and the fraction, the schedule."""
    rows = []
    for table in tables:
        for label in table.labels:
            method = table.methods.get(label, MethodFacts())
            rows.append([table.dataset, label, method.batch_size, method.images, method.reference, method.fraction,
                         method.schedule, method.representation])
    return rows


def _md_training(tables: list[Table]) -> list[str]:
    lines = ["## Training budgets and schedules", "",
             "Each method trains with its reference batch size on the same number of images; the fraction is "
             "of the images its reference run sees. A schedule is a warm-up of loss weights; unfinished means "
             "the weights never reached their final values within the budget.", "",
             _md_row(list(TRAINING_COLUMNS)), _md_row(["---"] * len(TRAINING_COLUMNS))]
    return lines + [_md_row(row) for row in training_rows(tables)] + [""]


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _md_cell(entry: Entry | None) -> str:
    if entry is None:
        return ""
    text = f"**{entry.text()}**" if entry.bold else entry.text()
    return text + (f" {MARKER}" if entry.significant else "")


def rank_rows(ranks: list[stats.RankTest]) -> tuple[list[str], list[list[str]]]:
    """Labels x metrics of average ranks, then the Friedman p and the critical difference."""
    labels = list(dict.fromkeys(label for rank in ranks for label in rank.average_ranks.index))
    rows = [[label] + [_number(rank.average_ranks.get(label, math.nan), 2) for rank in ranks] for label in labels]
    rows.append(["Friedman p"] + [_number(rank.friedman_p, 3) for rank in ranks])
    rows.append(["critical difference"] + [_number(rank.critical_difference, 2) for rank in ranks])
    return [rank.metric for rank in ranks], rows


def _number(value: float, digits: int) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _md_ranks(ranks: list[stats.RankTest]) -> list[str]:
    metrics, rows = rank_rows(ranks)
    lines = ["## Average ranks across datasets", "", "Rank 1 is best; Friedman test over datasets, Nemenyi "
             "critical difference at alpha 0.05 (Demsar 2006).", "", _md_row(["model"] + metrics),
             _md_row(["---"] + ["---:"] * len(metrics))]
    return lines + [_md_row(row) for row in rows] + [""]


def _md_failed(failed: list[dict]) -> list[str]:
    if not failed:
        return ["## Failed cells", "", "None.", ""]
    lines = ["## Failed cells", "", _md_row(["dataset", "model", "seed", "hash", "error"]), _md_row(["---"] * 5)]
    lines += [_md_row([str(cell[key]) for key in ("dataset", "label", "seed", "hash")]
                      + [" ".join(str(cell["error"]).split())]) for cell in failed]
    return lines + [""]


# --- LaTeX ---------------------------------------------------------------------------------------

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


LATEX_ARROWS = {"max": r"$\uparrow$", "min": r"$\downarrow$"}


def latex_escape(text: str) -> str:
    """Text safe in a LaTeX table; ``@`` is printable as is in document text and is left alone."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in str(text))


def render_latex(data: ReportData) -> str:
    lines = ["% Generated by crlbench (crlbench.reports.report); needs \\usepackage{booktabs}.",
             f"% {latex_escape(data.title)}"]
    for table in data.tables:
        header = ["model", "given", "latent"] + [f"{latex_escape(metric)} {LATEX_ARROWS[stats.direction(metric)]}"
                                                 for metric in table.metrics]
        lines += ["\\begin{table}[ht]", "\\centering", "\\small",
                  f"\\caption{{{latex_escape(data.title)}: {latex_escape(table.dataset)}. Mean $\\pm$ half-width of "
                  f"the 95\\% bootstrap interval over seeds; bold: best; $^\\dagger$: Holm-corrected Wilcoxon "
                  f"$p < {stats.ALPHA}$ against {latex_escape(data.reference)}.}}",
                  f"\\begin{{tabular}}{{llr{'r' * len(table.metrics)}}}", "\\toprule",
                  " & ".join(header) + " \\\\", "\\midrule"]
        for label in table.labels:
            method = table.methods.get(label, MethodFacts())
            cells = [latex_escape(label), latex_escape(method.given), latex_escape(method.latent_size)]
            cells += [_tex_cell(table.entries.get((label, metric))) for metric in table.metrics]
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def _tex_cell(entry: Entry | None) -> str:
    if entry is None:
        return ""
    text = entry.text(plus_minus="$\\pm$").replace("–", "--")
    text = f"\\textbf{{{text}}}" if entry.bold else text
    return text + ("$^\\dagger$" if entry.significant else "")


# --- HTML ----------------------------------------------------------------------------------------


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(data: ReportData) -> str:
    environment = Environment(loader=PackageLoader("crlbench.reports", "templates"), autoescape=True)
    rank_metrics, rank_table = rank_rows(data.ranks)
    sections = [(name, [(path.stem, png_data_uri(path)) for path in paths]) for name, paths in data.figures if paths]
    return environment.get_template("report.html.j2").render(
        data=data, legend=legend_lines(data.reference), marker=MARKER, arrows=ARROWS, direction=stats.direction,
        rank_metrics=rank_metrics, rank_table=rank_table, figure_sections=sections,
        training_columns=TRAINING_COLUMNS, training_rows=training_rows(data.tables), MethodFacts=MethodFacts)


# --- the report ----------------------------------------------------------------------------------


def ordered_records(records: list[dict], datasets: list[str], labels: list[str]) -> list[dict]:
    """Records sorted by dataset, label (reference first) and seed, so figures share the tables' order."""
    def key(record: dict) -> tuple[int, int, int]:
        cell = record["cell"]
        return datasets.index(cell["dataset"]), labels.index(cell.get("label") or cell["model"]), cell["seed"]
    return sorted(records, key=key)


def make_figures(records: list[dict], frame: pd.DataFrame, summary: pd.DataFrame, metrics: list[str],
                 ranks: list[stats.RankTest], folder: Path) -> list[tuple[str, list[Path]]]:
    """Every figure of the report, grouped in the sections the HTML shows."""
    def present(*paths) -> list[Path]:
        return [path for path in paths if path is not None]

    matrices = [path for variant, matrix in figures.MATRIX_FIGURES
                for path in figures.matrix_heatmaps(records, folder, variant=variant, matrix=matrix)]
    return [
        ("Scores per model (95% bootstrap CI, seeds as dots)", figures.point_plots(frame, summary, metrics, folder)),
        ("Critical-difference diagrams", present(*(figures.critical_difference(rank, folder) for rank in ranks))),
        ("Reconstruction against disentanglement", present(figures.reconstruction_scatter(frame, folder))),
        ("Matrices (rows = codes, columns = factors, mean over seeds)", matrices),
        ("Training curves (mean over seeds, band = ±1 sd)", present(figures.training_curves(records, folder))),
        ("Interventions (first seed)", figures.intervention_grids(records, folder)),
    ]


def write_report(records: list[dict], out_dir: str | os.PathLike, *, title: str, reference_label: str = "icm_vae",
                 metrics: list[str] | None = None, provenance: dict | None = None) -> list[Path]:
    """Write the leaderboards (md, csv, tex), ``index.html`` and ``figures/`` into ``out_dir``.

    ``records`` are result records (crlbench.suites.results.load_records; ``_dir`` locates matrices and
    intervention grids). ``metrics`` are score columns such as ``dci@reg.disentanglement``, by
    default those of ``DEFAULT_METRICS`` present in the records. ``provenance`` adds entries to the
    HTML and markdown footer. Returns the written paths, figures included.
    """
    check_records(records)
    out_dir = Path(out_dir)
    frame = records_frame(records)
    metrics = select_metrics(frame, metrics)
    datasets, labels = list(dict.fromkeys(frame["dataset"])), label_order(frame, reference_label)
    frame = frame.iloc[np.lexsort((frame["seed"], frame["label"].map(labels.index),
                                   frame["dataset"].map(datasets.index)))].reset_index(drop=True)
    summary = stats.summarise(frame, metrics)
    tests = stats.paired_tests(frame, metrics, reference=reference_label)
    ranks = [stats.rank_test(frame, metric) for metric in metrics]
    merged = merged_statistics(summary, tests.table)
    facts = method_facts(records)
    data = ReportData(title, reference_label, metrics, build_tables(merged, datasets, labels, metrics, facts), ranks,
                      failed_cells(frame), tests.notes + [note for rank in ranks for note in rank.notes],
                      collect_provenance(records, provenance))
    data.figures = make_figures(ordered_records(records, datasets, labels), frame, summary, metrics, ranks,
                                out_dir / "figures")
    written = _write_texts(out_dir, data, with_facts(merged, facts))
    return written + [path for _, paths in data.figures for path in paths]


def with_facts(merged: pd.DataFrame, facts: dict[tuple[str, str], MethodFacts]) -> pd.DataFrame:
    """The long-form table with what each method is given, its latent size and budget fraction (for the CSV)."""
    merged = merged.copy()
    keys = list(zip(merged["dataset"], merged["label"]))
    for column in ("given", "latent_size", "fraction"):
        merged[column if column != "fraction" else "budget_fraction"] = [
            getattr(facts.get(key, MethodFacts()), column) for key in keys]
    return merged


def _write_texts(out_dir: Path, data: ReportData, merged: pd.DataFrame) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {"leaderboard.md": render_markdown(data), "leaderboard.tex": render_latex(data),
             "index.html": render_html(data)}
    texts["leaderboard.csv"] = merged.to_csv(index=False, float_format="%.6g")
    for name, text in texts.items():
        write_text(out_dir / name, text)
    return [out_dir / name for name in texts]


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (crlbench.core.files.atomic_write: a locked temporary, swept if a write is killed)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
