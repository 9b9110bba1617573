"""MINE statistics MIC and TIC (Reshef et al., Science 2011, and arXiv 1505.02213 / 1505.02214).

The characteristic matrix holds, for every grid of x columns and y rows with x y <= B(n), the
largest mutual information any such grid achieves on the sample, normalised by log min(x, y). MIC
is its maximum and TIC its sum. It is approximated as in the Science paper's supplement:

* ``equipartition`` (EquipartitionYAxis): rows of (nearly) equal counts, ties kept together;
* ``clumps`` (GetClumpsPartition): along x, maximal runs of points in the same row; points that
  share an x value but not a row form their own clump;
* superclumps (GetSuperclumpsPartition): when there are more than k_hat = c x clumps, they are
  merged by an equipartition of the clump indices into k_hat groups;
* ``optimize_x_axis`` (OptimizeXAxis): dynamic programming over superclump boundaries giving the
  best mutual information for every number of columns 2..x at once.

Both orientations are computed (y equipartitioned and x optimised, then the reverse); the entry for
x columns and y rows takes the larger of the two. ``est="mic_e"`` gives the equicharacteristic
matrix (MIC_e, TIC_e) of arXiv 1505.02213, where the entry comes from the orientation that
equipartitions the axis with more cells (x when x >= y). The grid budget is B = max(n^alpha, 4) for alpha <= 1 and B = alpha for alpha > 4, capped at n.
Defaults are minepy's: alpha = 0.6, c = 15, est = "mic_approx".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Estimator = Literal["mic_approx", "mic_e"]


@dataclass(frozen=True)
class MineScore:
    """The characteristic matrix (a list of rows of varying length) and its statistics."""

    matrix: list[np.ndarray]

    @property
    def mic(self) -> float:
        return float(max(row.max() for row in self.matrix))

    def tic(self, norm: bool = False) -> float:
        """The sum of the characteristic matrix; ``norm`` divides by its number of entries."""
        total = float(sum(row.sum() for row in self.matrix))
        return total / sum(len(row) for row in self.matrix) if norm else total


def grid_budget(n: int, alpha: float) -> int:
    """B(n): the largest number of grid cells, max(n^alpha, 4), or alpha itself when alpha >= 4."""
    budget = max(n**alpha, 4.0) if alpha <= 1 else alpha
    return int(min(budget, n))


def mine_score(x: np.ndarray, y: np.ndarray, alpha: float = 0.6, c: float = 15, est: Estimator = "mic_approx") -> MineScore:
    """The approximate characteristic matrix of the sample (x, y)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    budget = grid_budget(len(x), alpha)
    by_x, by_y = np.argsort(x, kind="mergesort"), np.argsort(y, kind="mergesort")
    # forward[r][x - 2]: y equipartitioned into r rows, x optimised; backward: the roles swapped.
    rows_all = range(2, budget // 2 + 1)
    forward = {r: best_information(x[by_x], y[by_y], by_x, by_y, r, budget // r, c) for r in rows_all}
    backward = {r: best_information(y[by_y], x[by_x], by_y, by_x, r, budget // r, c) for r in rows_all}
    matrix = []
    for rows in rows_all:
        counts = np.arange(2, budget // rows + 1)
        transposed = np.array([backward[count][rows - 2] for count in counts])
        if est == "mic_e":  # the axis with more cells is the equipartitioned one
            information = np.where(counts >= rows, transposed, forward[rows])
        else:
            information = np.maximum(forward[rows], transposed)
        matrix.append(information / np.log(np.minimum(counts, rows)))
    return MineScore(matrix)


def best_information(
    x_sorted: np.ndarray, y_sorted: np.ndarray, order_x: np.ndarray, order_y: np.ndarray,
    rows: int, columns: int, c: float,
) -> np.ndarray:
    """Approximate max mutual information of grids with ``rows`` equipartitioned y rows and
    2..``columns`` x columns (ApproxMaxMI)."""
    n = len(x_sorted)
    row_of_y_rank = equipartition(y_sorted, rows)
    row = np.empty(n, dtype=np.int64)
    row[order_y] = row_of_y_rank
    row_in_x_order = row[order_x]
    clump = clumps(x_sorted, row_in_x_order)
    k_hat = int(c * columns)
    if clump[-1] + 1 > k_hat:
        clump = equipartition(clump.astype(np.float64), k_hat)
    return optimize_x_axis(row_in_x_order, clump, columns)


def equipartition(sorted_values: np.ndarray, parts: int) -> np.ndarray:
    """Row index of each sorted value, rows as equal in size as ties allow (EquipartitionYAxis)."""
    n = len(sorted_values)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    sizes = np.diff(np.r_[starts, n])
    labels = np.empty(n, dtype=np.int64)
    current, size_of_current, desired = 0, 0, n / parts
    for start, size in zip(starts.tolist(), sizes.tolist()):
        if size_of_current != 0 and abs(size_of_current + size - desired) >= abs(size_of_current - desired):
            current += 1
            size_of_current = 0
            desired = (n - start) / (parts - current)
        labels[start:start + size] = current
        size_of_current += size
    return labels


def clumps(x_sorted: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Clump index of each point in x order (GetClumpsPartition)."""
    labels = rows.astype(np.int64).copy()
    n = len(x_sorted)
    starts = np.flatnonzero(np.r_[True, x_sorted[1:] != x_sorted[:-1]])
    ends = np.r_[starts[1:], n]
    fresh = -1
    for start, end in zip(starts.tolist(), ends.tolist()):
        if end - start > 1 and np.any(labels[start:end] != labels[start]):
            labels[start:end] = fresh  # tied points in different rows: a clump of their own
            fresh -= 1
    return np.r_[0, np.cumsum(labels[1:] != labels[:-1])]


def optimize_x_axis(rows: np.ndarray, groups: np.ndarray, columns: int) -> np.ndarray:
    """Best mutual information (nats) with 2..``columns`` columns whose boundaries fall between the
    contiguous ``groups`` (superclumps) of the x-sorted points (OptimizeXAxis).

    I[t, l] is the best information of l columns over the first t groups; it extends an optimal
    (l - 1)-column partition of the first s groups by one column (s, t].
    """
    q, p = rows.max() + 1, groups[-1] + 1
    counts = np.zeros((q, p))
    np.add.at(counts, (rows, groups), 1)
    cumulative = np.concatenate([np.zeros((q, 1)), np.cumsum(counts, axis=1)], axis=1)  # [q, p + 1]
    c = cumulative.sum(axis=0)  # points in the first t groups, t = 0..p
    h_rows = _entropy_of_counts(cumulative[:, 1:], c[1:])  # H(Q) over the first t groups, t = 1..p
    # W[s, t] = (c_t - c_s) H(Q | column (s, t]), for 1 <= s <= t <= p (0 when s = t).
    between = cumulative[:, None, 1:] - cumulative[:, 1:, None]  # [q, s, t]
    width = c[None, 1:] - c[1:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        fractions = np.where(between > 0, between / width, 1.0)
        weighted = -(between * np.log(fractions)).sum(axis=0)
    weighted = np.where(width > 0, weighted, 0.0)
    upper = np.triu(np.ones((p, p), dtype=bool))
    best = np.empty(columns - 1)
    previous = np.zeros(p)  # I[s, 1] = 0: one column carries no information
    for level in range(2, columns + 1):
        if level > p:
            best[level - 2:] = best[level - 3] if level > 2 else 0.0
            break
        valid = upper.copy()
        valid[: level - 2] = False  # s >= level - 1 (1-based)
        gain = c[1:, None] * (previous - h_rows)[:, None] - weighted
        gain = np.where(valid, gain, -np.inf).max(axis=0)
        current = np.full(p, -np.inf)
        current[level - 1:] = h_rows[level - 1:] + gain[level - 1:] / c[level:]
        best[level - 2] = current[-1]
        previous = current
    return best


def _entropy_of_counts(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each column of ``counts`` normalised by ``totals``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        fractions = counts / totals
        terms = np.where(counts > 0, fractions * np.log(np.where(counts > 0, fractions, 1.0)), 0.0)
    return -terms.sum(axis=0)
