"""``leaderboard.md``: the protocol, a leaderboard per dataset with its legend, the training table, average
ranks, failed cells, notes, captioned figures and provenance (GitHub-flavoured markdown tables)."""

from __future__ import annotations

from pathlib import Path

from crlbench.reports.tables import ARROWS, MARKER, TRAINING_COLUMNS, Entry, ReportData, rank_rows, training_rows


def row(cells: list[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def cell(entry: Entry | None) -> str:
    if entry is None:
        return ""
    text = f"**{entry.text()}**" if entry.bold else entry.text()
    return text + (f" {MARKER}" if entry.significant else "")


def label_cell(label: str, mark: str) -> str:
    """The model's name, with ``‡ k/n`` when k of its n seeds did not converge."""
    return f"{label} {mark}" if mark else label


def render(data: ReportData, out_dir: Path | None = None) -> str:
    lines = [f"# {data.title}", ""] + protocol(data) + ["## Leaderboard", ""]
    for table in data.tables:
        header = ["model", "given", "latent"] + [f"{data.column(m).short} {ARROWS[data.column(m).direction]}"
                                                 for m in table.metrics]
        lines += [f"### {table.dataset}", "", row(header), row(["---"] * 3 + ["---:"] * len(table.metrics))]
        for label in table.labels:
            method = table.facts(label)
            lines.append(row([label_cell(label, method.convergence.mark()), method.given, method.latent_size]
                             + [cell(table.entries.get((label, metric))) for metric in table.metrics]))
        lines.append("")
    lines += ["Columns:", ""] + [f"- {column.short}: `{column.key}`, {column.better}" for column in data.columns] + [""]
    lines += [f"- {line}" for line in data.legend] + [""]
    lines += training(data) + ranks(data) + failed(data.failed)
    if data.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in data.notes] + [""]
    lines += figures(data, out_dir)
    lines += ["## Provenance", ""] + [f"- {key}: {value}" for key, value in data.provenance.items()] + [""]
    return "\n".join(lines)


def protocol(data: ReportData) -> list[str]:
    lines = ["## Protocol", ""] + [f"- **{name}**: {value}" for name, value in data.protocol.facts] + [""]
    columns = ["method", "model", "datasets", "given", "latent", "budget", "hyperparameters (resolved)"]
    lines += [row(columns), row(["---"] * len(columns))]
    lines += [row([m.label, m.model, m.datasets, m.given, m.latent_size, m.budget, m.hyperparameters])
              for m in data.protocol.methods]
    return lines + [""]


def training(data: ReportData) -> list[str]:
    lines = ["## Training budgets and schedules", "",
             "Each method trains with its reference batch size on the same number of images; the fraction is "
             "of the images its reference run sees. A schedule is a warm-up of loss weights; unfinished means "
             "the weights never reached their final values within the budget. converged: the trainer's "
             "verdict per seed (rule in the protocol).", "",
             row(list(TRAINING_COLUMNS)), row(["---"] * len(TRAINING_COLUMNS))]
    return lines + [row(values) for values in training_rows(data.tables)] + [""]


def ranks(data: ReportData) -> list[str]:
    table = rank_rows(data.ranks)
    shorts = [data.column(metric).short for metric in table.metrics]
    lines = ["## Average ranks across datasets", "", "Rank 1 is best; Friedman test over datasets, Nemenyi "
             "critical difference at alpha 0.05 (Demsar 2006).", "", row(["model"] + shorts),
             row(["---"] + ["---:"] * len(shorts))]
    for label, values in table.body:
        tally = data.convergence.get(label)
        lines.append(row([label_cell(label, tally.mark() if tally else "")] + [shown for shown, _ in values]))
    return lines + [row([name] + values) for name, values in table.foot] + [""]


def failed(cells: list[dict]) -> list[str]:
    if not cells:
        return ["## Failed cells", "", "None.", ""]
    lines = ["## Failed cells", "", row(["dataset", "model", "seed", "hash", "error"]), row(["---"] * 5)]
    lines += [row([str(entry[key]) for key in ("dataset", "label", "seed", "hash")]
                  + [" ".join(str(entry["error"]).split())]) for entry in cells]
    return lines + [""]


def figures(data: ReportData, out_dir: Path | None) -> list[str]:
    lines = ["## Figures", ""] if any(items for _, items in data.figures) else []
    number = 0
    for section, items in data.figures:
        if not items:
            continue
        lines += [f"### {section}", ""]
        for item in items:
            number += 1
            path = item.path.relative_to(out_dir) if out_dir and item.path.is_relative_to(out_dir) else item.path
            lines += [f"![Figure {number}]({path.as_posix()})", "",
                      f"*Figure {number}.* {item.caption}", ""]
    return lines
