"""The report's figures, written as PNG files, each with the caption the report prints under it.

Figures are built as ``matplotlib.figure.Figure`` objects that pyplot never sees: no backend is
selected, no global figure list grows, and nothing needs closing (the equivalent of ``plt.close``
after every figure, safe in threads and worker processes too). Every figure uses matplotlib's
constrained layout, so titles and colour bars do not overlap the panels. Each model has one colour in
every figure (crlbench.reports.palette). Each function returns :class:`Drawn` items (path and
caption), or an empty list / None when its inputs are absent; none of them raises on missing data.

- point plots: per score, a panel per dataset with each model's mean and 95% bootstrap interval (the
  leaderboard's numbers, :func:`crlbench.reports.stats.summarise`) beside its seeds. A panel whose
  positive values span more than :data:`LOG_SPAN_DECADES` decades gets a log axis; otherwise seeds
  beyond Tukey's far-out fences (3 IQR past the quartiles; Tukey 1977, *Exploratory Data Analysis*)
  are drawn as markers on the clipped axis edge, labelled with their value;
- matrix heatmaps: a metric's matrix (rows = codes, columns = factors), averaged over seeds, with a box
  around the codes of each factor's concept block;
- reconstruction against disentanglement; training curves (the held-out reconstruction error per epoch
  on a log axis, or each model's training loss scaled to its own range); scores per epoch (DCI and MCC read
  on the validation sample during training, with the leaderboard's own final reading); intervention grids;
  and the critical-difference diagram of Demsar (2006) from average ranks, drawn here rather than by
  scikit-posthocs so that tied ranks neither crowd the rank axis' tick labels nor put two labels on one spot.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from crlbench.core.records import is_reference
from crlbench.reports import numbers
from crlbench.reports.columns import short_name
from crlbench.reports.convergence import MARK as UNCONVERGED, Tally
from crlbench.reports.palette import model_colour
from crlbench.reports.stats import ALPHA, RankTest, direction, ok_values
from crlbench.reports.tables import Drawn

logger = logging.getLogger(__name__)

DPI = 100
DISENTANGLEMENT = "dci@reg.disentanglement"
MATRIX_FIGURES = (("dci@reg", "importance"), ("mic@aligned", "mic"))
MATRIX_NAMES = {("dci@reg", "importance"): "DCI importance", ("mic@aligned", "mic"): "MIC"}
TILE_MIN_PIXELS = 48  # tiny images are magnified to at least this size in intervention grids
TILE_GAP = 2
INTERVENTION_ARRAYS = {"source", "truth", "model"}  # values and factor_names are optional
MAX_HEATMAP_HEIGHT = 7.0  # inches
MAX_CODE_LABELS = 16  # code labels on a heatmap's y axis
LOG_SPAN_DECADES = 1.5  # positive values spanning more than this many decades get a log axis
FAR_OUT = 3.0  # Tukey's far-out fence, in interquartile ranges beyond the quartiles
MONITOR = "heldout_reconstruction_mse"  # per-epoch held-out reconstruction error of the trainer
SCORE_CURVES = ("dci@reg.disentanglement", "mcc@pearson.mcc")  # scores read during training (their curves)
VALUE_DIGITS = 3  # significant digits of the do() values printed on intervention grids
CD_ROW = 1.0  # critical-difference diagram: the height of a label's row, in the axis' data units
CD_BAR_GAP = 0.45  # the vertical step between the axis and each level of non-significance bars
CD_BAR_OVERHANG = 0.04  # ranks a bar reaches past its outer labels, so that a bar of tied labels shows
CD_LABEL_GAP = 0.04  # the gap between the rank axis and the labels, as a fraction of its length


def slug(text: str) -> str:
    """A file-name-safe version of a metric or dataset name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def ordered_unique(values) -> list:
    return list(dict.fromkeys(values))


def better_text(metric: str) -> str:
    return "higher is better" if direction(metric) == "max" else "lower is better"


def named(metric: str) -> str:
    """``DCI-D (dci@reg.disentanglement, higher is better)``."""
    return f"{short_name(metric)} ({metric}, {better_text(metric)})"


# --- axes that survive outliers ------------------------------------------------------------------


@dataclass
class Axis:
    """How a panel's value axis is drawn: ``log``, or linear with optional ``limits`` that leave out
    far-out values (drawn at the edge instead)."""

    kind: str = "linear"
    limits: tuple[float, float] | None = None

    def clip(self, value: float) -> float | None:
        """Where an out-of-limits value is drawn (the nearest edge), None when it is inside."""
        if self.limits is None or self.limits[0] <= value <= self.limits[1]:
            return None
        return self.limits[0] if value < self.limits[0] else self.limits[1]


def value_axis(values) -> Axis:
    """Log when every value is positive and they span more than :data:`LOG_SPAN_DECADES` decades; else
    linear, limited to the values within Tukey's far-out fences when some lie beyond them."""
    values = np.asarray([value for value in values if np.isfinite(value)], dtype=float)
    if values.size < 2:
        return Axis()
    if values.min() > 0 and math.log10(values.max() / values.min()) > LOG_SPAN_DECADES:
        return Axis("log")
    low_quartile, high_quartile = np.percentile(values, [25, 75])
    spread = high_quartile - low_quartile
    inside = values[(values >= low_quartile - FAR_OUT * spread) & (values <= high_quartile + FAR_OUT * spread)]
    if spread <= 0 or inside.size == values.size:
        return Axis()
    pad = 0.08 * max(inside.max() - inside.min(), spread)
    return Axis("linear", (float(inside.min() - pad), float(inside.max() + pad)))


def apply_axis(ax, axis: Axis, points: list[tuple[float, float, str]]) -> int:
    """Set the panel's scale and limits; draw each clipped (x, value, colour) as a triangle on the edge
    labelled with its value. Returns how many values were clipped."""
    if axis.kind == "log":
        ax.set_yscale("log")
        return 0
    if axis.limits is None:
        return 0
    ax.set_ylim(*axis.limits)
    placed: list[tuple[float, float]] = []  # (x, edge) of the labels drawn so far: neighbours stack their labels
    for x, value, colour in sorted(points, key=lambda point: point[0]):
        edge = axis.clip(value)
        if edge is None:
            continue
        upward = value > edge
        ax.scatter([x], [edge], marker="^" if upward else "v", s=40, color=colour, edgecolors="black",
                   linewidths=0.6, zorder=4, clip_on=False)
        stacked = sum(1 for other_x, other_edge in placed if other_edge == edge and abs(other_x - x) < 0.5)
        offset = (-10 - 8 * stacked) if upward else 4 + 8 * stacked
        ax.annotate(numbers.significant(value, 3), (x, edge), xytext=(5, offset), textcoords="offset points",
                    fontsize=7, color=colour)
        placed.append((x, edge))
    return len(placed)


# --- point plots ---------------------------------------------------------------------------------


def point_plots(frame: pd.DataFrame, summary: pd.DataFrame, metrics: list[str], out_dir: Path) -> list[Drawn]:
    """One figure per metric: a panel per dataset, models on x in their colours, mean with 95% CI
    beside the seeds; each panel keeps its own axis (log or outlier-clipped when needed)."""
    datasets, labels = ordered_unique(frame["dataset"]), ordered_unique(frame["label"])
    drawn = []
    for metric in metrics:
        figure = new_figure(1.2 + (0.45 * len(labels) + 0.6) * len(datasets), 3.4)
        axes = figure.subplots(1, len(datasets), squeeze=False)[0]
        notes = []
        for ax, dataset in zip(axes, datasets):
            note = _point_panel(ax, frame[frame["dataset"] == dataset], summary, dataset, metric, labels)
            if note:
                notes.append(f"{dataset}: {note}")
        axes[0].set_ylabel(f"{short_name(metric)}\n({better_text(metric)})")
        figure.suptitle(f"{short_name(metric)} ({metric})", fontsize=10)
        caption = (f"{named(metric)} of each model on each dataset: the mean over seeds with its 95% bootstrap "
                   f"interval (the leaderboard's numbers), the seeds as faint dots beside it. Each dataset has "
                   f"its own axis" + (f"; {'; '.join(notes)}." if notes else "."))
        drawn.append(Drawn(save(figure, out_dir / f"point_{slug(metric)}.png"), caption))
    return drawn


def _point_panel(ax, rows: pd.DataFrame, summary: pd.DataFrame, dataset: str, metric: str,
                 labels: list[str]) -> str:
    """One dataset's panel; returns what its axis does unusually ("" when nothing)."""
    means = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)].set_index("label").reindex(labels)
    seeds = {label: ok_values(rows[rows["label"] == label], metric).to_numpy() for label in labels}
    everything = np.concatenate([values for values in seeds.values()] + [means["ci_low"].to_numpy(),
                                                                         means["ci_high"].to_numpy()])
    axis = value_axis(everything)
    points = []
    for position, label in enumerate(labels):
        colour = model_colour(label)
        values = seeds[label]
        xs = position + 0.22 + strip_jitter(len(values), 0.12)
        ax.scatter(xs, values, s=12, color=colour, alpha=0.45, linewidths=0, zorder=2)
        points += [(x, value, colour) for x, value in zip(xs, values)]
        mean = means.loc[label]
        if np.isfinite(mean["mean"]):
            errors = [[mean["mean"] - mean["ci_low"]], [mean["ci_high"] - mean["mean"]]]
            ax.errorbar([position], [mean["mean"]], yerr=errors, fmt="o", color=colour, capsize=3, markersize=5,
                        zorder=3)
            points.append((position, float(mean["mean"]), colour))
    clipped = apply_axis(ax, axis, points)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(labels) - 0.3)
    ax.set_title(dataset, fontsize=9)
    if axis.kind == "log":
        span = math.log10(np.nanmax(everything) / np.nanmin(everything[everything > 0]))
        return f"log axis (values span {span:.1f} decades)"
    if clipped:
        return (f"axis clipped at the far-out fences, {clipped} value{'s' * (clipped != 1)} beyond drawn as ▲/▼ "
                "on the edge with their value")
    return ""


def strip_jitter(count: int, width: float = 0.3) -> np.ndarray:
    """Evenly spread horizontal offsets for a strip of ``count`` seeds (deterministic, unlike random jitter)."""
    return np.linspace(-width / 2, width / 2, count) if count > 1 else np.zeros(count)


# --- matrices ------------------------------------------------------------------------------------


def cells_by_group(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The ok records per (dataset, label), sorted by seed."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        if record.get("status") == "ok":
            cell = record["cell"]
            groups[(cell["dataset"], cell.get("label") or cell["model"])].append(record)
    return {key: sorted(value, key=lambda record: record["cell"]["seed"]) for key, value in groups.items()}


def seed_matrices(records: list[dict], variant: str, matrix: str) -> list[np.ndarray]:
    """The ``matrix`` array of ``variant`` from each record's ``metrics/<variant>.npz`` that has it."""
    arrays = []
    for record in records:
        if matrix not in record.get("metrics", {}).get(variant, {}).get("matrices", []):
            continue
        path = Path(record.get("_dir", "")) / "metrics" / f"{variant}.npz"
        if path.exists():
            with np.load(path) as stored:
                if matrix in stored:
                    arrays.append(np.asarray(stored[matrix], dtype=float))
    return arrays


def average_matrix(arrays: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """The mean over seeds when every shape agrees, otherwise the first seed's matrix; with the count."""
    if all(array.shape == arrays[0].shape for array in arrays):
        return np.mean(arrays, axis=0), len(arrays)
    return arrays[0], 1


def block_size(record: dict, variant: str) -> int:
    """The codes per concept block of the representation ``variant`` read: the metric's own
    ``info.representation``, else the record's ``representation``, else 1."""
    info = ((record.get("metrics") or {}).get(variant) or {}).get("info") or {}
    representation = info.get("representation") or record.get("representation") or {}
    return max(1, int(representation.get("block_size") or 1))


def matrix_heatmaps(records: list[dict], out_dir: Path, *, variant: str, matrix: str) -> list[Drawn]:
    """Per dataset, a heatmap of ``variant``'s ``matrix`` for each model (codes x factors)."""
    groups = cells_by_group(records)
    name = MATRIX_NAMES.get((variant, matrix), f"{variant} {matrix}")
    drawn = []
    for dataset in ordered_unique(key[0] for key in groups):
        panels = []
        for (group_dataset, label), group in groups.items():
            arrays = seed_matrices(group, variant, matrix) if group_dataset == dataset else []
            if arrays:
                panels.append((label, *average_matrix(arrays), group[0].get("factors", []),
                               block_size(group[0], variant)))
        if panels:
            sizes = sorted({panel[4] for panel in panels})
            path = _heatmap_figure(panels, out_dir / f"matrix_{slug(variant)}_{matrix}_{slug(dataset)}.png",
                                   f"{name} ({variant}): {dataset}")
            caption = (f"{name} matrix of {variant} on {dataset}, mean over seeds: rows are the codes of the "
                       f"evaluated representation, columns the factors, one colour scale for every model. A white "
                       f"box marks the concept block of each factor (code block k goes with factor k; block size "
                       f"{', '.join(map(str, sizes))}); mass outside the boxes is mixing.")
            drawn.append(Drawn(path, caption))
    return drawn


def _heatmap_figure(panels, path: Path, title: str) -> Path:
    """seaborn heatmaps side by side on one colour scale; tall matrices (128 codes of ICM-VAE on
    CausalCircuit under the raw representation) keep a bounded height and label every n-th code."""
    import seaborn

    vmax = max(float(np.nanmax(values)) for _, values, _, _, _ in panels) or 1.0
    codes = max(values.shape[0] for _, values, _, _, _ in panels)
    figure = new_figure(2.6 * len(panels) + 1.0, min(1.6 + 0.22 * codes, MAX_HEATMAP_HEIGHT))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, values, n_seeds, factors, size) in zip(axes, panels):
        names = factors if len(factors) == values.shape[1] else list(range(values.shape[1]))
        seaborn.heatmap(values, ax=ax, vmin=0, vmax=vmax, cmap="viridis", xticklabels=names,
                        yticklabels=max(1, values.shape[0] // MAX_CODE_LABELS), cbar=False)
        _concept_boxes(ax, values.shape, size)
        ax.tick_params(labelsize=7)
        ax.set_xticklabels(ax.get_xticklabels(), rotation=45, ha="right")
        ax.set_title(f"{label} ({n_seeds} seed{'s' * (n_seeds != 1)})", fontsize=9, color=model_colour(label))
    axes[0].set_ylabel("code")
    figure.colorbar(axes[-1].collections[0], ax=list(axes), shrink=0.8, pad=0.02)
    figure.suptitle(title, fontsize=10)
    return save(figure, path)


def _concept_boxes(ax, shape: tuple[int, int], size: int) -> None:
    """A white box around rows [k size, (k + 1) size) of column k, for each factor k the codes cover."""
    codes, factors = shape
    for k in range(min(factors, codes // size)):
        ax.add_patch(Rectangle((k, k * size), 1, size, fill=False, edgecolor="white", linewidth=1.5))


# --- reconstruction versus disentanglement -------------------------------------------------------


def reconstruction_column(frame: pd.DataFrame) -> str | None:
    """The reconstruction score to plot: one named ``reconstruction*``, an mse preferred; else None."""
    candidates = [column for column in frame.columns if column.startswith("reconstruction")]
    preferred = [column for column in candidates if "mse" in column]
    return (preferred or candidates or [None])[0]


def reconstruction_scatter(frame: pd.DataFrame, out_dir: Path) -> Drawn | None:
    """Per seed, reconstruction score against DCI disentanglement, a panel per dataset; None if absent."""
    x_column = reconstruction_column(frame)
    if x_column is None or DISENTANGLEMENT not in frame:
        return None
    points = frame[frame["status"] == "ok"][["dataset", "label", x_column, DISENTANGLEMENT]].dropna()
    if points.empty:
        return None
    datasets, labels = ordered_unique(points["dataset"]), ordered_unique(frame["label"])
    figure = new_figure(1.8 + 3.2 * len(datasets), 3.4)
    axes = figure.subplots(1, len(datasets), sharey=True, squeeze=False)[0]
    logs = []
    for ax, dataset in zip(axes, datasets):
        here = points[points["dataset"] == dataset]
        for label in labels:
            rows = here[here["label"] == label]
            ax.scatter(rows[x_column], rows[DISENTANGLEMENT], s=18, color=model_colour(label), label=label)
        if value_axis(here[x_column]).kind == "log":
            ax.set_xscale("log")
            logs.append(dataset)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel(f"{short_name(x_column)} ({better_text(x_column)})")
    axes[0].set_ylabel(f"{short_name(DISENTANGLEMENT)} ({better_text(DISENTANGLEMENT)})")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title="model")
    caption = (f"Per seed: {named(x_column)} against {named(DISENTANGLEMENT)} on each dataset; one colour per "
               "model. Good models sit top left." + (f" Log x axis on {', '.join(logs)}." if logs else ""))
    return Drawn(save(figure, out_dir / "reconstruction_vs_disentanglement.png"), caption)


# --- training curves -----------------------------------------------------------------------------


def curve_term(records: list[dict]) -> str | None:
    """What to plot per epoch: the held-out reconstruction error when recorded, else ``loss``, else the
    first recorded term; None without a history."""
    for record in records:
        epochs = (record.get("history") or {}).get("epochs") or []
        if epochs:
            if any(MONITOR in epoch for epoch in epochs):
                return MONITOR
            return "loss" if "loss" in epochs[0] else next(iter(epochs[0]), None)
    return None


def seed_curves(records: list[dict], term: str) -> np.ndarray:
    """[seeds, epochs] values of ``term``; shorter runs padded with NaN."""
    curves = [[epoch.get(term, np.nan) for epoch in (record.get("history") or {}).get("epochs") or []]
              for record in records]
    length = max((len(curve) for curve in curves), default=0)
    return np.array([curve + [np.nan] * (length - len(curve)) for curve in curves], dtype=float)


def scaled_to_own_range(curves: np.ndarray) -> np.ndarray:
    """``curves`` mapped so that the model's own mean curve runs from its minimum (0) to its maximum (1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(curves, axis=0)
    low, high = np.nanmin(mean), np.nanmax(mean)
    return (curves - low) / (high - low) if high > low else curves - low


def training_curves(records: list[dict], out_dir: Path, convergence: dict[tuple[str, str], Tally] | None = None
                    ) -> Drawn | None:
    """A panel per dataset: each model's held-out reconstruction error per epoch (log axis) when recorded,
    else its training loss scaled to its own range, mean over seeds with a +-1 sd band. A model with
    unconverged seeds is drawn dashed and marked in the legend."""
    groups = cells_by_group(records)
    datasets = ordered_unique(key[0] for key in groups)
    terms = {key: curve_term(group) for key, group in groups.items()}
    if not any(terms.values()):
        return None
    convergence = convergence or {}
    figure = new_figure(1.2 + 3.4 * len(datasets), 3.4)
    axes = figure.subplots(1, len(datasets), squeeze=False)[0]
    scales, left_out = [], []
    for ax, dataset in zip(axes, datasets):
        here = {label: terms[(name, label)] for name, label in groups if name == dataset}
        monitored = [label for label, term in here.items() if term == MONITOR]
        for label, term in here.items():
            if term is None or (monitored and term != MONITOR):
                left_out += [f"{label} on {dataset}"] if term else []
                continue
            curves = seed_curves(groups[(dataset, label)], term)
            if term != MONITOR:
                curves = scaled_to_own_range(curves)
            tally = convergence.get((dataset, label))
            name = (label + (f" {tally.mark()}" if tally and tally.marked else "")
                    + ("" if term in (MONITOR, "loss") else f" ({term})"))
            _curve(ax, curves, name, model_colour(label), dashed=bool(tally and tally.marked))
        values = np.concatenate([seed_curves(groups[(dataset, label)], MONITOR).ravel() for label in monitored] or [[]])
        if monitored and np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
            scale = "held-out reconstruction MSE per epoch, log axis"
        elif monitored:
            scale = "held-out reconstruction MSE per epoch"
        else:
            scale = "training loss per epoch scaled to each model's own range (0 = its lowest, 1 = its highest mean)"
        scales += [] if scale in scales else [scale]
        ax.set_ylabel("held-out reconstruction MSE" if monitored else "training loss (own range)", fontsize=8)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    marked = any(tally.marked for tally in convergence.values())
    caption = (f"Training curves, mean over seeds with a ±1 sd band: {'; '.join(scales)}."
               + (f" Dashed, {UNCONVERGED} k/n: k of the model's n seeds did not converge." if marked else "")
               + (f" Without the held-out monitor, left out beside monitored models: {', '.join(left_out)}."
                  if left_out else ""))
    return Drawn(save(figure, out_dir / "training_curves.png"), caption)


def _curve(ax, curves: np.ndarray, name: str, colour: str, dashed: bool = False) -> None:
    if curves.size == 0 or np.all(np.isnan(curves)):
        return
    epochs = np.arange(1, curves.shape[1] + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch no seed reached: NaN, not drawn
        mean = np.nanmean(curves, axis=0)
        spread = np.nanstd(curves, axis=0)
    ax.plot(epochs, mean, label=name, color=colour, linestyle="--" if dashed else "-")
    ax.fill_between(epochs, mean - spread, mean + spread, color=colour, alpha=0.2, linewidth=0)


# --- scores per epoch ----------------------------------------------------------------------------


def score_readings(records: list[dict], score: str) -> tuple[np.ndarray, np.ndarray]:
    """The epochs read during training (the union over ``records``) and each record's ``score`` at them
    [seeds, epochs] (NaN where a seed has no reading), from ``history.evaluations``."""
    per_seed = [{round(float(reading["epoch"]), 6): reading["scores"][score]
                 for reading in (record.get("history") or {}).get("evaluations") or []
                 if score in (reading.get("scores") or {})} for record in records]
    epochs = np.array(sorted({epoch for seed in per_seed for epoch in seed}), dtype=float)
    values = np.array([[seed.get(epoch, np.nan) for epoch in epochs] for seed in per_seed], dtype=float)
    return epochs, values.reshape(len(per_seed), len(epochs))


def full_weight_epoch(records: list[dict]) -> float | None:
    """The epoch where the records' schedule reaches full weight (``convergence.full_weight_step`` turned into
    epochs by the readings' own step/epoch ratio), or None."""
    for record in records:
        step = (record.get("convergence") or {}).get("full_weight_step")
        readings = (record.get("history") or {}).get("evaluations") or []
        if step is not None and readings and readings[-1]["step"] > 0:
            return float(step) * float(readings[-1]["epoch"]) / float(readings[-1]["step"])
    return None


def score_curves(records: list[dict], out_dir: Path, scores: tuple[str, ...] = SCORE_CURVES,
                 convergence: dict[tuple[str, str], Tally] | None = None) -> list[Drawn]:
    """One figure per score read during training: a panel per dataset, each model's readings on the
    validation sample against the epoch, mean over seeds with a +-1 sd band (a single seed: its line), the
    leaderboard's own final reading (test split, full evaluation sample; mean over seeds) as a diamond at
    the end, and a dotted line where a schedule reaches full weight. Records without readings draw
    nothing; no readings at all, no figure."""
    groups = cells_by_group(records)
    convergence = convergence or {}
    drawn = []
    for score in scores:
        read = {key: score_readings(group, score) for key, group in groups.items()}
        read = {key: value for key, value in read.items() if value[0].size}
        if not read:
            continue
        datasets = ordered_unique(key[0] for key in read)
        figure = new_figure(1.2 + 3.6 * len(datasets), 3.4)
        axes = figure.subplots(1, len(datasets), squeeze=False)[0]
        marked = False
        for ax, dataset in zip(axes, datasets):
            for (name, label), (epochs, values) in read.items():
                if name != dataset:
                    continue
                colour, tally = model_colour(label), convergence.get((dataset, label))
                reference = any(is_reference(record) for record in groups[(name, label)])
                marked |= bool(tally and tally.marked)
                shown = (label + (" (reference)" if reference else "")
                         + (f" {tally.mark()}" if tally and tally.marked else ""))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # an epoch no seed read: NaN, not drawn
                    mean, spread = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
                style = ":" if reference else "--" if tally and tally.marked else "-"
                ax.plot(epochs, mean, color=colour, linestyle=style, label=shown, marker="o" if epochs.size == 1 else None)
                ax.fill_between(epochs, mean - spread, mean + spread, color=colour, alpha=0.15, linewidth=0)
                final = [record["scores"][score] for record in groups[(name, label)] if score in record.get("scores", {})]
                if final:
                    ax.scatter([epochs[-1]], [float(np.mean(final))], marker="D", s=36, color=colour,
                               edgecolors="black", linewidths=0.6, zorder=4)
                full = full_weight_epoch(groups[(name, label)])
                if full is not None and full <= epochs[-1]:
                    ax.axvline(full, color=colour, linestyle=":", linewidth=1)
            ax.set_title(dataset, fontsize=9)
            ax.set_xlabel("epoch")
            ax.ticklabel_format(axis="x", useOffset=False)
            ax.set_ylabel(short_name(score), fontsize=8)
            ax.legend(fontsize=7)
        path = save(figure, out_dir / f"curve_{slug(score)}.png")
        caption = (f"{named(score)} read during training on the fixed validation sample (never the test split), "
                   "mean over seeds with a ±1 sd band; diamonds: the leaderboard's own reading at the end of "
                   "training (test split, the full evaluation sample, mean over seeds). The readings use fewer rows"
                   + (" and cheaper trees than the leaderboard's DCI" if score.startswith("dci@") else "")
                   + ", so a curve need not end on its diamond. A dotted vertical line: where the model's schedule "
                   "reaches full weight (readings before it are left out of the convergence rule)."
                   + (f" Dashed, {UNCONVERGED} k/n: k of the model's n seeds did not converge." if marked else ""))
        drawn.append(Drawn(path, caption))
    return drawn


# --- intervention grids --------------------------------------------------------------------------


def first_interventions(records: list[dict]) -> dict[str, np.ndarray] | None:
    """The arrays of ``interventions.npz`` of the lowest seed that has a complete one."""
    for record in records:
        path = Path(record.get("_dir", "")) / "interventions.npz"
        if path.exists():
            with np.load(path) as stored:
                if INTERVENTION_ARRAYS <= set(stored.files):
                    return {name: stored[name] for name in stored.files}
            logger.warning("%s lacks one of %s; left out of the grid", path, sorted(INTERVENTION_ARRAYS))
    return None


def intervention_grids(records: list[dict], out_dir: Path) -> list[Drawn]:
    """Per dataset: for each factor a row of true counterfactuals, then each model's do() row.

    The source images and ground truth come from the first model (in report order) that has an
    intervention file; every model's row comes from its lowest seed (same seed, so the same sources
    when the suite pairs seeds across models).
    """
    groups = cells_by_group(records)
    drawn = []
    for dataset in ordered_unique(key[0] for key in groups):
        grids = {label: first_interventions(group) for (group_dataset, label), group in groups.items()
                 if group_dataset == dataset}
        grids = {label: arrays for label, arrays in grids.items() if arrays is not None}
        if grids:
            path = save(intervention_figure(grids, f"{dataset}: true counterfactuals and each model's do()"),
                        out_dir / f"interventions_{slug(dataset)}.png")
            caption = (f"Interventions on {dataset} (each model's lowest seed): the source images (top row), then "
                       "for each factor the true counterfactual do(factor = value) of each source, with the value "
                       f"printed on the image (whole numbers as they are, others to {VALUE_DIGITS} significant "
                       "digits, in the factor's label units of the dataset card), followed by each model's do() of "
                       "the same source.")
            drawn.append(Drawn(path, caption))
    return drawn


def _intervention_rows(grids: dict[str, dict[str, np.ndarray]]) -> tuple[list[str], list[np.ndarray], list]:
    """Row names, rows of images [S, H, W, C], and (row, factor, values) for the truth rows."""
    reference = next(iter(grids.values()))
    truth = reference["truth"]
    names = [str(name) for name in reference.get("factor_names", range(truth.shape[0]))]
    row_names, rows, truth_rows = ["source"], [reference["source"]], []
    for k, factor in enumerate(names):
        values = reference["values"][k] if "values" in reference else []
        truth_rows.append((len(rows), factor, values))
        row_names.append(f"do({factor}) truth")
        rows.append(truth[k])
        for label, arrays in grids.items():
            if arrays["model"].shape != truth.shape:
                logger.warning("intervention grid of %s has shape %s, expected %s; left out",
                               label, arrays["model"].shape, truth.shape)
                continue
            row_names.append(label)
            rows.append(arrays["model"][k])
    return row_names, rows, truth_rows


def montage(rows: list[np.ndarray], gap: int = TILE_GAP) -> np.ndarray:
    """Rows of images [S, H, W, C] laid out on one white uint8 RGB canvas."""
    samples, height, width, _ = rows[0].shape
    canvas = np.full((len(rows) * (height + gap), samples * (width + gap), 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        images = np.repeat(row, 3, axis=-1) if row.shape[-1] == 1 else row[..., :3]
        for s, image in enumerate(images):
            top, left = r * (height + gap), s * (width + gap)
            canvas[top:top + height, left:left + width] = image
    return canvas


def intervention_figure(grids: dict[str, dict[str, np.ndarray]], title: str) -> Figure:
    """The intervention grid of ``grids`` (label -> the arrays of an ``interventions.npz``) as an unsaved
    figure: the first grid's sources and true counterfactuals, and each grid's do() rows. A single
    cell's grid (``{label: arrays}``) is what MLflow shows for the cell (:mod:`crlbench.tracking.mlflow_runs`)."""
    row_names, rows, truth_rows = _intervention_rows(grids)
    _, height, width, _ = rows[0].shape
    scale = max(1.0, TILE_MIN_PIXELS / height)
    canvas = montage(rows)
    figure = new_figure(2.4 + canvas.shape[1] * scale / DPI, 0.8 + canvas.shape[0] * scale / DPI)
    ax = figure.add_subplot()
    ax.imshow(canvas, interpolation="nearest")
    _label_rows(ax, row_names, truth_rows, height, width, set(grids))
    ax.set_title(title, fontsize=9)
    return figure


def _label_rows(ax, row_names: list[str], truth_rows: list, height: int, width: int, labels: set[str]) -> None:
    """Name every row (a model's in its colour), rule a line above each factor's truth row and print its do() values."""
    ax.set_yticks([r * (height + TILE_GAP) + height / 2 for r in range(len(row_names))], row_names, fontsize=8)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ticks = ax.get_yticklabels()
    for tick, name in zip(ticks, row_names):
        if name in labels:
            tick.set_color(model_colour(name))
    for r, _, values in truth_rows:
        ax.axhline(r * (height + TILE_GAP) - TILE_GAP / 2 - 0.5, color="black", linewidth=1.5)
        ticks[r].set_fontweight("bold")
        for s, value in enumerate(values):
            shown = numbers.readable(float(value), VALUE_DIGITS)
            ax.text(s * (width + TILE_GAP), r * (height + TILE_GAP), f"= {shown}", fontsize=6, color="white",
                    va="top", ha="left",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "linewidth": 0})


# --- critical difference -------------------------------------------------------------------------


def critical_difference(ranks: RankTest, out_dir: Path) -> Drawn | None:
    """The critical-difference diagram of one metric; None with fewer than 2 datasets or 3 models, or when the
    critical difference exceeds k - 1 and no two models could differ by it (the report says so instead:
    :func:`crlbench.reports.tables.unreachable_sentences`)."""
    blocks, groups = ranks.per_dataset.shape
    if ranks.nemenyi is None or blocks < 2 or groups < 3 or not ranks.reachable:
        return None
    p_value = numbers.significant(ranks.friedman_p, 2)
    cd = numbers.significant(ranks.critical_difference, 3)
    caption = (f"Critical-difference diagram of {named(ranks.metric)}: each model's average rank over {blocks} "
               f"datasets (1 = best; Friedman p = {p_value}). Models joined by a bar do not differ by the Nemenyi "
               f"critical difference {cd} at alpha {ALPHA} (Demsar 2006).")
    return Drawn(save(critical_difference_figure(ranks), out_dir / f"cd_{slug(ranks.metric)}.png"), caption)


def critical_difference_figure(ranks: RankTest) -> Figure:
    """The unsaved critical-difference diagram of ``ranks`` (:func:`cd_figure`) with its title: the score, the
    number of datasets, the Friedman p and the critical difference."""
    figure = cd_figure(ranks.average_ranks, ranks.nemenyi)
    figure.axes[0].set_title(f"{short_name(ranks.metric)}: average rank over {ranks.per_dataset.shape[0]} datasets "
                             f"(Friedman p = {numbers.significant(ranks.friedman_p, 2)}, "
                             f"CD = {numbers.significant(ranks.critical_difference, 3)})", fontsize=9, pad=14)
    return figure


def cd_figure(average_ranks: pd.Series, p_values: pd.DataFrame, alpha: float = ALPHA) -> Figure:
    """Demsar's (2006) diagram of ``average_ranks`` (label -> average rank, 1 = best) as an unsaved figure.

    The rank axis runs over every possible rank, 1 to k, with a tick at each whole rank (so ties, which leave
    the ranks' own range empty, cannot crowd the tick labels). Each label has a row of its own, the better half
    on the left (best at the top), the worse half on the right (worst at the top), its name outside the axis on
    its side and an elbow to its rank: labels of tied or near ranks are stacked, never drawn over each other.
    Bars under the axis join the labels no pair of which differs (Nemenyi ``p_values`` >= ``alpha``)."""
    order = average_ranks.astype(float).sort_values(kind="stable")
    count = len(order)
    half = (count + 1) // 2
    left, right = order.iloc[:half], order.iloc[half:][::-1]
    bars = cd_bars(order, p_values, alpha)
    levels: list[list[tuple[float, float]]] = []  # bars that do not overlap share a level
    placed = []
    for low, high in bars:
        level = next((index for index, used in enumerate(levels)
                      if all(high < other_low or other_high < low for other_low, other_high in used)), len(levels))
        if level == len(levels):
            levels.append([])
        levels[level].append((low, high))
        placed.append((low, high, level))
    first_row = -CD_BAR_GAP * (len(levels) + 1) - CD_ROW / 2
    rows = max(len(left), len(right))
    figure = new_figure(6, 0.9 + 0.3 * (rows + 0.5 * len(levels)))
    ax = figure.add_subplot()
    ax.set_xlim(1, count)
    ax.set_ylim(first_row - CD_ROW * (rows - 0.5), 0.2)
    ax.xaxis.set_ticks_position("top")
    ax.set_xticks(range(1, count + 1))
    ax.tick_params(axis="x", labelsize=8)
    ax.yaxis.set_visible(False)
    for side in ("left", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.spines["top"].set_position(("data", 0))
    for low, high, level in placed:
        y = -CD_BAR_GAP * (level + 1)
        ax.plot([low - CD_BAR_OVERHANG, high + CD_BAR_OVERHANG], [y, y], color="black", linewidth=2.5,
                solid_capstyle="butt", zorder=3)
    for labels, x, align, text in ((left, 1 - CD_LABEL_GAP * (count - 1), "right", "{label} ({rank:.2f})"),
                                   (right, count + CD_LABEL_GAP * (count - 1), "left", "({rank:.2f}) {label}")):
        for row, (label, rank) in enumerate(labels.items()):
            y, colour = first_row - CD_ROW * row, model_colour(str(label))
            ax.plot([x, rank, rank], [y, y, 0], color=colour, linewidth=1.2, clip_on=False)
            ax.scatter([rank], [0], color=colour, s=24, zorder=4, clip_on=False)
            ax.text(x, y, text.format(label=label, rank=rank), color=colour, ha=align, va="center", fontsize=9,
                    clip_on=False)
    return figure


def cd_bars(order: pd.Series, p_values: pd.DataFrame, alpha: float) -> list[tuple[float, float]]:
    """The (lowest, highest) average rank of each maximal run of labels, consecutive in rank order, no pair of
    which differs (``p_values`` >= ``alpha``); runs of one label are left out."""
    labels = list(order.index)
    runs: list[tuple[int, int]] = []
    for start in range(len(labels)):
        end = start
        while end + 1 < len(labels) and all(p_values.loc[other, labels[end + 1]] >= alpha
                                            for other in labels[start:end + 1]):
            end += 1
        if end > start and not any(low <= start and end <= high for low, high in runs):
            runs.append((start, end))
    return [(float(order.iloc[start]), float(order.iloc[end])) for start, end in runs]
