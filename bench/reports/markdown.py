"""``leaderboard.md``: a linked table of contents, the protocol, a leaderboard per dataset with its legend
(reference rows in their own group under the methods), the degenerate runs, the negative controls (per-factor
ceilings), the training table, the paired differences against the comparison method, ranks across datasets and
within each dataset across seeds, failed and partial cells, notes, captioned figures and provenance
(GitHub-flavoured markdown tables). Each heading the contents link to has an ``<a id>`` before it
(crlbench.reports.contents)."""

from __future__ import annotations

from pathlib import Path

from crlbench.reports.contents import Section, anchor, contents
from crlbench.reports.controls import CEILING_TAG, TEXT as CONTROL_TEXT, ControlTable
from crlbench.reports.tables import (ARROWS, DEGENERATE_TEXT, MARKER, REFERENCE_TAG, TRAINING_COLUMNS, Entry, ReportData,
                                     effect_tables, effect_text, rank_rows, rank_text, training_rows)


def row(cells: list[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def cell(entry: Entry | None) -> str:
    if entry is None:
        return ""
    text = f"**{entry.text()}**" if entry.bold else entry.text()
    return text + (f" {entry.flag()}" if entry.flag() else "") + (f" {MARKER}" if entry.significant else "")


def label_cell(label: str, *marks: str) -> str:
    """The model's name, with ``‡ k/n`` when k of its n seeds did not converge and ``¶`` when the data break an
    assumption of the method."""
    return " ".join([label, *(mark for mark in marks if mark)])


def heading(level: int, title: str, name: str) -> list[str]:
    """A heading with the anchor the contents link to (``name``: crlbench.reports.contents.anchor)."""
    return [f'<a id="{name}"></a>', "", f"{'#' * level} {title}", ""]


def table_of_contents(sections: list[Section]) -> list[str]:
    """``- [Leaderboard](#leaderboard): [pendulum](#leaderboard-pendulum), ...``: one line per section."""
    def link(section: Section) -> str:
        return f"[{section.title}](#{section.id})"

    return ["## Contents", ""] + [f"- {link(section)}" + (": " + ", ".join(link(child) for child in section.children)
                                                          if section.children else "")
                                  for section in sections] + [""]


def render(data: ReportData, out_dir: Path | None = None) -> str:
    lines = [f"# {data.title}", ""] + table_of_contents(contents(data)) + protocol(data)
    lines += heading(2, "Leaderboard", "leaderboard")
    for table in data.tables:
        header = ["model", "given", "latent"] + [f"{data.column(m).short} {ARROWS[data.column(m).direction]}"
                                                 for m in table.metrics]
        lines += heading(3, table.dataset, anchor("leaderboard", table.dataset))
        lines += [row(header), row(["---"] * 3 + ["---:"] * len(table.metrics))]
        for label in table.labels:
            method = table.facts(label)
            lines.append(table_row(table, label, label_cell(label, method.convergence.mark(), method.outside())))
        if table.references:
            lines.append(row(["*reference rows*"] + [""] * (2 + len(table.metrics))))
            lines += [table_row(table, label, f"{label} {REFERENCE_TAG}") for label in table.references]
        lines.append("")
        lines += [table.control, ""] if table.control else []
    lines += ["Columns:", ""] + [f"- {column.short}: `{column.key}`, {column.better}" for column in data.columns] + [""]
    lines += [f"- {line}" for line in data.legend] + [""]
    lines += degenerate(data.degenerate) + controls(data.controls)
    lines += training(data) + effects(data) + ranks(data) + seed_ranks(data) + failed(data.failed)
    lines += partial(data.partial)
    if data.notes:
        lines += heading(2, "Notes", "notes") + [f"- {note}" for note in data.notes] + [""]
    lines += figures(data, out_dir)
    lines += heading(2, "Provenance", "provenance") + [f"- {key}: {value}" for key, value in data.provenance.items()]
    return "\n".join(lines + [""])


def table_row(table, label: str, name: str) -> str:
    method = table.facts(label)
    return row([name, method.given, method.latent_size] + [cell(table.entries.get((label, metric)))
                                                           for metric in table.metrics])


def effects(data: ReportData) -> list[str]:
    """The paired differences against the comparison method, a table per dataset."""
    tables = effect_tables(data.paired, data.metrics, data.flags)
    if not tables:
        return []
    lines = heading(2, f"Paired differences against {data.reference}", "paired-differences")
    lines += [line for text in effect_text(data.paired) for line in (text, "")]
    for table in tables:
        shorts = [f"Δ {data.column(m).short} {ARROWS[data.column(m).direction]}" for m in table.metrics]
        lines += heading(3, table.dataset, anchor("paired", table.dataset))
        lines += [row(["model"] + shorts), row(["---"] + ["---:"] * len(shorts))]
        lines += [row([label] + [table.cells.get((label, metric), "") for metric in table.metrics])
                  for label in table.labels] + [""]
        lines += [line for text in table.legend for line in (text, "")]
    return lines


def protocol(data: ReportData) -> list[str]:
    lines = heading(2, "Protocol", "protocol")
    lines += [f"- **{name}**: {value}" for name, value in data.protocol.facts] + [""]
    columns = ["method", "model", "datasets", "given", "latent", "budget", "hyperparameters (resolved)"]
    lines += [row(columns), row(["---"] * len(columns))]
    lines += [row([m.label, m.model, m.datasets, m.given, m.latent_size, m.budget, m.hyperparameters])
              for m in data.protocol.methods]
    return lines + [""]


def training(data: ReportData) -> list[str]:
    lines = heading(2, "Training budgets and schedules", "training")
    lines += ["Each method trains with its reference batch size on the same number of images; the fraction is "
              "of the images its reference run sees. A schedule is a warm-up of loss weights; unfinished means "
              "the weights never reached their final values within the budget. converged: the trainer's "
              "verdict per seed (rule in the protocol; a seed not judged, with why).", "",
              row(list(TRAINING_COLUMNS)), row(["---"] * len(TRAINING_COLUMNS))]
    return lines + [row(values) for values in training_rows(data.tables)] + [""]


def ranks(data: ReportData) -> list[str]:
    return heading(2, "Average ranks across datasets", "ranks") + rank_table(data, data.ranks)


def seed_ranks(data: ReportData) -> list[str]:
    """Per dataset, the average ranks across matched seeds and their Friedman permutation p."""
    if not data.seed_ranks:
        return []
    lines = heading(2, "Average ranks within each dataset, across seeds", "seed-ranks")
    for dataset, tests in data.seed_ranks.items():
        lines += heading(3, dataset, anchor("seed-ranks", dataset)) + rank_table(data, tests)
    return lines


def rank_table(data: ReportData, tests) -> list[str]:
    table = rank_rows(tests, data.flags)
    shorts = [data.column(metric).short for metric in table.metrics]
    lines = [rank_text(tests), "", row(["model"] + shorts), row(["---"] + ["---:"] * len(shorts))]
    for label, values in table.body:
        tally = data.convergence.get(label)
        lines.append(row([label_cell(label, tally.mark() if tally else "")] + [shown for shown, _ in values]))
    lines += [row([name] + values) for name, values in table.foot] + [""]
    return lines + [line for text in table.legend for line in (text, "")]


def degenerate(rows: list[dict]) -> list[str]:
    """What the degeneracy checks flag, per dataset and method: the rows, or parts of rows, that are artefacts."""
    lines = heading(2, "Degenerate runs", "degenerate-runs") + [DEGENERATE_TEXT, ""]
    if not rows:
        return lines + ["None.", ""]
    lines += [row(["dataset", "model", "check", "seeds", "invalidates", "reason (first flagged seed)"]), row(["---"] * 6)]
    lines += [row([entry[key] for key in ("dataset", "label", "check", "seeds", "invalidates", "reason")]) for entry in rows]
    return lines + [""]


def controls(tables: list[ControlTable]) -> list[str]:
    """Per negative control, the per-factor R² of the supervised ceiling and of each method, the factors no
    method can recover and why; nothing when there is no negative control."""
    if not tables:
        return []
    lines = heading(2, "Negative controls", "negative-controls") + [CONTROL_TEXT, ""]
    for table in tables:
        lines += heading(3, table.dataset, anchor("control", table.dataset))
        if table.rows:
            lines += [row(["model"] + [table.header(factor) for factor in table.factors]),
                      row(["---"] + ["---:"] * len(table.factors))]
            lines += [row([f"{entry.label} {CEILING_TAG}" if entry.ceiling else entry.label] + entry.cells)
                      for entry in table.rows] + [""]
        lines += [f"- {line}" for line in table.reasons()] + [""]
        lines += [line for note in table.notes for line in (note, "")]
    return lines


def failed(cells: list[dict]) -> list[str]:
    lines = heading(2, "Failed cells", "failed-cells")
    if not cells:
        return lines + ["None.", ""]
    lines += [row(["dataset", "model", "seed", "hash", "error"]), row(["---"] * 5)]
    lines += [row([str(entry[key]) for key in ("dataset", "label", "seed", "hash")]
                  + [" ".join(str(entry["error"]).split())]) for entry in cells]
    return lines + [""]


def partial(cells: list[dict]) -> list[str]:
    """Partial cells (some metrics failed, the other scores stand), when there are any."""
    if not cells:
        return []
    lines = heading(2, "Partial cells", "partial-cells")
    lines += ["Finished cells some of whose metrics failed; their other scores stand in the tables.", "",
              row(["dataset", "model", "seed", "hash", "failed metrics"]), row(["---"] * 5)]
    lines += [row([str(entry[key]) for key in ("dataset", "label", "seed", "hash")]
                  + [" ".join(str(entry["error"]).split())]) for entry in cells]
    return lines + [""]


def figures(data: ReportData, out_dir: Path | None) -> list[str]:
    lines = heading(2, "Figures", "figures") if any(items for _, items in data.figures) else []
    number = 0
    for section, items in data.figures:
        if not items:
            continue
        lines += heading(3, section, anchor("figures", section))
        for item in items:
            number += 1
            path = item.path.relative_to(out_dir) if out_dir and item.path.is_relative_to(out_dir) else item.path
            lines += [f"![Figure {number}]({path.as_posix()})", "",
                      f"*Figure {number}.* {item.caption}", ""]
    return lines
