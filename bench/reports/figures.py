"""The report's figures, written as PNG files.

Figures are built as ``matplotlib.figure.Figure`` objects that pyplot never sees: no backend is
selected, no global figure list grows, and nothing needs closing (the equivalent of ``plt.close``
after every figure, safe in threads and worker processes too). Each function returns the paths it
wrote, or an empty list / None when its inputs are absent; none of them raises on missing data.

- point plots: the mean of one score per model with its 95% bootstrap interval (the same numbers as
  the leaderboard, from :func:`crlbench.reports.stats.summarise`) over the seeds drawn as a strip;
- matrix heatmaps: a metric's matrix (rows = codes, columns = factors), averaged over seeds;
- reconstruction against disentanglement, training curves, intervention grids, and the
  critical-difference diagram of Demsar (2006) from average ranks.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import scikit_posthocs
from matplotlib.figure import Figure

from crlbench.reports.stats import RankTest, direction, ok_values

logger = logging.getLogger(__name__)

DPI = 100
DISENTANGLEMENT = "dci@reg.disentanglement"
MATRIX_FIGURES = (("dci@reg", "importance"), ("mic@aligned", "mic"))
TILE_MIN_PIXELS = 48  # tiny images are magnified to at least this size in intervention grids
TILE_GAP = 2
INTERVENTION_ARRAYS = {"source", "truth", "model"}  # values and factor_names are optional
MAX_HEATMAP_HEIGHT = 7.0  # inches
MAX_CODE_LABELS = 16  # code labels on a heatmap's y axis
DODGE = 0.6  # the width over which the datasets of one model are spread in point plots


def slug(text: str) -> str:
    """A file-name-safe version of a metric or dataset name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def ordered_unique(values) -> list:
    return list(dict.fromkeys(values))


def better_text(metric: str) -> str:
    return "higher is better" if direction(metric) == "max" else "lower is better"


# --- point plots ---------------------------------------------------------------------------------


def point_plots(frame: pd.DataFrame, summary: pd.DataFrame, metrics: list[str], out_dir: Path) -> list[Path]:
    """One figure per metric: models on x, a colour per dataset, mean with 95% CI beside its seeds."""
    datasets, labels = ordered_unique(frame["dataset"]), ordered_unique(frame["label"])
    paths = []
    for metric in metrics:
        figure = Figure(figsize=(1.5 + 0.5 * len(labels) * len(datasets), 3.2))
        ax = figure.add_subplot()
        for index, dataset in enumerate(datasets):
            offset = (index - (len(datasets) - 1) / 2) * DODGE / max(len(datasets), 1)
            _point_series(ax, frame[frame["dataset"] == dataset], summary, dataset, metric, labels, offset, f"C{index}")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_ylabel(f"{metric}\n({better_text(metric)})")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="dataset")
        paths.append(save(figure, out_dir / f"point_{slug(metric)}.png"))
    return paths


def _point_series(ax, rows: pd.DataFrame, summary: pd.DataFrame, dataset: str, metric: str, labels: list[str],
                  offset: float, colour: str) -> None:
    """One dataset's seeds (faint dots) and means with their intervals, shifted by ``offset``."""
    for position, label in enumerate(labels):
        values = ok_values(rows[rows["label"] == label], metric).to_numpy()
        ax.scatter(position + offset + strip_jitter(len(values), DODGE / 6), values, s=10, color=colour, alpha=0.35,
                   linewidths=0, zorder=2)
    means = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)].set_index("label")
    means = means.reindex(labels)
    errors = np.vstack([means["mean"] - means["ci_low"], means["ci_high"] - means["mean"]])
    ax.errorbar(np.arange(len(labels)) + offset, means["mean"], yerr=errors, fmt="o", color=colour, capsize=3,
                markersize=5, zorder=3, label=dataset)


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


def matrix_heatmaps(records: list[dict], out_dir: Path, *, variant: str, matrix: str) -> list[Path]:
    """Per dataset, a heatmap of ``variant``'s ``matrix`` for each model (codes x factors)."""
    groups = cells_by_group(records)
    paths = []
    for dataset in ordered_unique(key[0] for key in groups):
        panels = []
        for (group_dataset, label), group in groups.items():
            arrays = seed_matrices(group, variant, matrix) if group_dataset == dataset else []
            if arrays:
                panels.append((label, *average_matrix(arrays), group[0].get("factors", [])))
        if panels:
            paths.append(_heatmap_figure(panels, out_dir / f"matrix_{slug(variant)}_{matrix}_{slug(dataset)}.png",
                                         f"{variant} {matrix}: {dataset}"))
    return paths


def _heatmap_figure(panels, path: Path, title: str) -> Path:
    """seaborn heatmaps side by side on one colour scale; tall matrices (128 codes of ICM-VAE on
    CausalCircuit) keep a bounded height and label every n-th code."""
    import seaborn

    vmax = max(float(np.nanmax(values)) for _, values, _, _ in panels) or 1.0
    codes = max(values.shape[0] for _, values, _, _ in panels)
    figure = Figure(figsize=(2.6 * len(panels) + 0.8, min(1.2 + 0.22 * codes, MAX_HEATMAP_HEIGHT)))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    colourbar_axes = figure.add_axes([0.92, 0.15, 0.012, 0.7])
    for index, (ax, (label, values, n_seeds, factors)) in enumerate(zip(axes, panels)):
        names = factors if len(factors) == values.shape[1] else list(range(values.shape[1]))
        seaborn.heatmap(values, ax=ax, vmin=0, vmax=vmax, cmap="viridis", xticklabels=names,
                        yticklabels=max(1, values.shape[0] // MAX_CODE_LABELS), cbar=index == 0,
                        cbar_ax=colourbar_axes if index == 0 else None)
        ax.tick_params(labelsize=7)
        ax.set_xticklabels(ax.get_xticklabels(), rotation=45, ha="right")
        ax.set_title(f"{label} ({n_seeds} seed{'s' * (n_seeds != 1)})", fontsize=9)
    axes[0].set_ylabel("code")
    figure.subplots_adjust(right=0.9, bottom=0.25)
    figure.suptitle(title, y=1.02)
    return save(figure, path)


# --- reconstruction versus disentanglement -------------------------------------------------------


def reconstruction_column(frame: pd.DataFrame) -> str | None:
    """The reconstruction score to plot: one named ``reconstruction*``, an mse preferred; else None."""
    candidates = [column for column in frame.columns if column.startswith("reconstruction")]
    preferred = [column for column in candidates if "mse" in column]
    return (preferred or candidates or [None])[0]


def reconstruction_scatter(frame: pd.DataFrame, out_dir: Path) -> Path | None:
    """Per seed, reconstruction score against DCI disentanglement, a panel per dataset; None if absent."""
    x_column = reconstruction_column(frame)
    if x_column is None or DISENTANGLEMENT not in frame:
        return None
    points = frame[frame["status"] == "ok"][["dataset", "label", x_column, DISENTANGLEMENT]].dropna()
    if points.empty:
        return None
    datasets, labels = ordered_unique(points["dataset"]), ordered_unique(frame["label"])
    figure = Figure(figsize=(1.5 + 3.2 * len(datasets), 3.2))
    axes = figure.subplots(1, len(datasets), sharey=True, squeeze=False)[0]
    for ax, dataset in zip(axes, datasets):
        for index, label in enumerate(labels):
            rows = points[(points["dataset"] == dataset) & (points["label"] == label)]
            ax.scatter(rows[x_column], rows[DISENTANGLEMENT], s=18, color=f"C{index}", label=label)
        ax.set_title(dataset)
        ax.set_xlabel(f"{x_column} ({better_text(x_column)})")
    axes[0].set_ylabel(DISENTANGLEMENT)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title="model")
    return save(figure, out_dir / "reconstruction_vs_disentanglement.png")


# --- training curves -----------------------------------------------------------------------------


def curve_term(records: list[dict]) -> str | None:
    """``loss`` when the first recorded epoch has it, else that epoch's first term; None if no history."""
    for record in records:
        epochs = record.get("history", {}).get("epochs") or []
        if epochs:
            return "loss" if "loss" in epochs[0] else next(iter(epochs[0]), None)
    return None


def seed_curves(records: list[dict], term: str) -> np.ndarray:
    """[seeds, epochs] values of ``term``; shorter runs padded with NaN."""
    curves = [[epoch.get(term, np.nan) for epoch in record.get("history", {}).get("epochs") or []]
              for record in records]
    length = max((len(curve) for curve in curves), default=0)
    return np.array([curve + [np.nan] * (length - len(curve)) for curve in curves], dtype=float)


def training_curves(records: list[dict], out_dir: Path) -> Path | None:
    """A panel per dataset: each model's loss per epoch, mean over seeds with a +-1 sd band."""
    groups = cells_by_group(records)
    datasets, labels = ordered_unique(key[0] for key in groups), ordered_unique(key[1] for key in groups)
    if not any(curve_term(group) for group in groups.values()):
        return None
    figure = Figure(figsize=(1 + 3.4 * len(datasets), 3.2))
    axes = figure.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets):
        for (group_dataset, label), group in groups.items():
            term = curve_term(group) if group_dataset == dataset else None
            if term is not None:
                _curve(ax, seed_curves(group, term), label if term == "loss" else f"{label} ({term})",
                       f"C{labels.index(label)}")
        ax.set_title(dataset)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("training loss")
    legend = {name: handle for ax in axes for handle, name in zip(*ax.get_legend_handles_labels())}
    if legend:
        axes[-1].legend(legend.values(), legend.keys(), loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return save(figure, out_dir / "training_curves.png")


def _curve(ax, curves: np.ndarray, name: str, colour: str) -> None:
    if curves.size == 0 or np.all(np.isnan(curves)):
        return
    epochs = np.arange(1, curves.shape[1] + 1)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(curves, axis=0)
        spread = np.nanstd(curves, axis=0)
    ax.plot(epochs, mean, label=name, color=colour)
    ax.fill_between(epochs, mean - spread, mean + spread, color=colour, alpha=0.2, linewidth=0)


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


def intervention_grids(records: list[dict], out_dir: Path) -> list[Path]:
    """Per dataset: for each factor a row of true counterfactuals, then each model's do() row.

    The source images and ground truth come from the first model (in report order) that has an
    intervention file; every model's row comes from its lowest seed (same seed, so the same sources
    when the suite pairs seeds across models).
    """
    groups = cells_by_group(records)
    paths = []
    for dataset in ordered_unique(key[0] for key in groups):
        grids = {label: first_interventions(group) for (group_dataset, label), group in groups.items()
                 if group_dataset == dataset}
        grids = {label: arrays for label, arrays in grids.items() if arrays is not None}
        if grids:
            paths.append(_intervention_figure(dataset, grids, out_dir / f"interventions_{slug(dataset)}.png"))
    return paths


def _intervention_rows(grids: dict[str, dict[str, np.ndarray]]) -> tuple[list[str], list[np.ndarray], list]:
    """Row names, rows of images [S, H, W, C], and (row, values) for the truth rows."""
    reference = next(iter(grids.values()))
    truth = reference["truth"]
    names = [str(name) for name in reference.get("factor_names", range(truth.shape[0]))]
    row_names, rows, truth_rows = ["source"], [reference["source"]], []
    for k, factor in enumerate(names):
        values = reference["values"][k] if "values" in reference else []
        truth_rows.append((len(rows), values))
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


def _intervention_figure(dataset: str, grids: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
    return save(intervention_figure(grids, f"{dataset}: true counterfactuals and each model's do() (first seed)"), path)


def intervention_figure(grids: dict[str, dict[str, np.ndarray]], title: str) -> Figure:
    """The intervention grid of ``grids`` (label -> the arrays of an ``interventions.npz``) as an unsaved
    figure: the first grid's sources and true counterfactuals, and each grid's do() rows. A single
    cell's grid (``{label: arrays}``) is what MLflow shows for the cell (:mod:`crlbench.tracking.mlflow_runs`)."""
    row_names, rows, truth_rows = _intervention_rows(grids)
    _, height, width, _ = rows[0].shape
    scale = max(1.0, TILE_MIN_PIXELS / height)
    canvas = montage(rows)
    figure = Figure(figsize=(2.2 + canvas.shape[1] * scale / DPI, 0.6 + canvas.shape[0] * scale / DPI))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest")
    _label_rows(ax, row_names, truth_rows, height, width)
    ax.set_title(title)
    return figure


def _label_rows(ax, row_names: list[str], truth_rows: list, height: int, width: int) -> None:
    """Name every row, rule a line above each factor's truth row and print its do() values."""
    rows = len(row_names)
    ax.set_yticks([r * (height + TILE_GAP) + height / 2 for r in range(rows)], row_names, fontsize=8)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    for r, _ in truth_rows:
        ax.axhline(r * (height + TILE_GAP) - TILE_GAP / 2 - 0.5, color="black", linewidth=1.5)
        ax.get_yticklabels()[r].set_fontweight("bold")
    for r, values in truth_rows:
        for s, value in enumerate(values):
            ax.text(s * (width + TILE_GAP), r * (height + TILE_GAP), f"{value:.2g}", fontsize=6,
                    color="white", va="top", ha="left",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "linewidth": 0})


# --- critical difference -------------------------------------------------------------------------


def critical_difference(ranks: RankTest, out_dir: Path) -> Path | None:
    """The critical-difference diagram of one metric; None with fewer than 2 datasets or 3 models."""
    blocks, groups = ranks.per_dataset.shape
    if ranks.nemenyi is None or blocks < 2 or groups < 3:
        return None
    figure = Figure(figsize=(6, 0.6 + 0.3 * groups))
    ax = figure.add_subplot()
    scikit_posthocs.critical_difference_diagram(ranks.average_ranks, ranks.nemenyi, ax=ax)
    ax.set_title(f"{ranks.metric}: average rank over {blocks} datasets "
                 f"(Friedman p = {ranks.friedman_p:.3g}, CD = {ranks.critical_difference:.2f})", fontsize=9, pad=24)
    return save(figure, out_dir / f"cd_{slug(ranks.metric)}.png")
