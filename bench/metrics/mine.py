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
from numba import njit

# numba's on-disk cache (``cache=True``, in __pycache__) is keyed by this file's path and modification
# time and pickles the module's import name: a checkout that moved from ``bench.metrics.mine`` to
# ``crlbench.metrics.mine`` must not reuse it, which this comment's arrival (a new mtime) ensures.

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
    # forward[r][x - 2]: y equipartitioned into r rows, x optimised with x columns, normalised by
    # log min(x, rows obtained): ties can leave fewer rows than asked. backward: the roles swapped.
    rows_all = range(2, budget // 2 + 1)
    forward = {r: best_information(x[by_x], y[by_y], by_x, by_y, r, budget // r, c) for r in rows_all}
    backward = {r: best_information(y[by_y], x[by_x], by_y, by_x, r, budget // r, c) for r in rows_all}
    matrix = []
    for rows in rows_all:
        counts = np.arange(2, budget // rows + 1)
        transposed = np.array([backward[count][rows - 2] for count in counts])
        if est == "mic_e":  # the axis with more cells is the equipartitioned one
            matrix.append(np.where(counts >= rows, transposed, forward[rows]))
        else:
            matrix.append(np.maximum(forward[rows], transposed))
    return MineScore(matrix)


def best_information(
    x_sorted: np.ndarray, y_sorted: np.ndarray, order_x: np.ndarray, order_y: np.ndarray,
    rows: int, columns: int, c: float,
) -> np.ndarray:
    """Normalised approximate max mutual information of grids with ``rows`` equipartitioned y rows
    and 2..``columns`` x columns (ApproxMaxMI, divided by log min(columns, rows obtained))."""
    n = len(x_sorted)
    row_of_y_rank = equipartition(y_sorted, rows)
    obtained = int(row_of_y_rank[-1]) + 1
    if obtained < 2:  # a constant variable carries no information
        return np.zeros(columns - 1)
    row = np.empty(n, dtype=np.int64)
    row[order_y] = row_of_y_rank
    row_in_x_order = row[order_x]
    clump = clumps(x_sorted, row_in_x_order)
    k_hat = int(c * columns)
    if clump[-1] + 1 > k_hat:
        clump = equipartition(clump.astype(np.float64), k_hat)
    information = optimize_x_axis(row_in_x_order, clump, columns)
    return information / np.log(np.minimum(np.arange(2, columns + 1), obtained))


@njit(cache=True, error_model="numpy")
def equipartition(sorted_values: np.ndarray, parts: int) -> np.ndarray:
    """Row index of each sorted value, rows as equal in size as ties allow (EquipartitionYAxis).

    Ties stay in one row; a tie block joins the current row unless that moves the row's size
    further from the desired size, which is recomputed for the points left at each new row.
    """
    n = len(sorted_values)
    labels = np.empty(n, dtype=np.int64)
    current, size_of_current, desired = 0, 0, n / parts
    start = 0
    while start < n:
        end = start + 1
        while end < n and sorted_values[end] == sorted_values[start]:
            end += 1
        size = end - start
        if size_of_current != 0 and abs(size_of_current + size - desired) >= abs(size_of_current - desired):
            current += 1
            size_of_current = 0
            desired = (n - start) / (parts - current)
        labels[start:end] = current
        size_of_current += size
        start = end
    return labels


@njit(cache=True)
def clumps(x_sorted: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Clump index of each point in x order (GetClumpsPartition)."""
    n = len(x_sorted)
    labels = rows.copy()
    fresh = -1
    start = 0
    while start < n:
        end = start + 1
        mixed = False
        while end < n and x_sorted[end] == x_sorted[start]:
            mixed = mixed or labels[end] != labels[start]
            end += 1
        if mixed:  # tied points in different rows: a clump of their own
            labels[start:end] = fresh
            fresh -= 1
        start = end
    clump = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        clump[i] = clump[i - 1] + (labels[i] != labels[i - 1])
    return clump


@njit(cache=True)
def optimize_x_axis(rows: np.ndarray, groups: np.ndarray, columns: int) -> np.ndarray:
    """Best mutual information (nats) with 2..``columns`` columns whose boundaries fall between the
    contiguous ``groups`` (superclumps) of the x-sorted points (OptimizeXAxis).

    I[t, l], the best information of l columns over the first t groups, extends an optimal
    (l - 1)-column partition of the first s groups by the column (s, t]:
    I[t, l] = H(Q_t) + max_s (c_s (I[s, l - 1] - H(Q_s)) - (c_t - c_s) H(Q | (s, t])) / c_t,
    with c_t the points in the first t groups and Q_t their rows. Entropies of integer counts use
    k log k, so that no logarithm is taken inside the loops.
    """
    n, q, p = len(rows), rows.max() + 1, groups[-1] + 1
    cumulative = np.zeros((q, p + 1), dtype=np.int64)
    for i in range(n):
        cumulative[rows[i], groups[i] + 1] += 1
    for t in range(1, p + 1):
        cumulative[:, t] += cumulative[:, t - 1]
    k_log_k = np.zeros(n + 1)
    for k in range(1, n + 1):
        k_log_k[k] = k * np.log(k)
    c = cumulative.sum(axis=0).astype(np.float64)
    h_rows = np.zeros(p + 1)  # H(Q_t) = log c_t - sum_i k_i log k_i / c_t
    for t in range(1, p + 1):
        total = 0.0
        for i in range(q):
            total += k_log_k[cumulative[i, t]]
        h_rows[t] = np.log(c[t]) - total / c[t]
    weighted = np.zeros((p + 1, p + 1))  # (c_t - c_s) H(Q | (s, t]) for s < t
    for s in range(1, p + 1):
        for t in range(s + 1, p + 1):
            width = cumulative[:, t].sum() - cumulative[:, s].sum()
            total = 0.0
            for i in range(q):
                total += k_log_k[cumulative[i, t] - cumulative[i, s]]
            weighted[s, t] = k_log_k[width] - total
    best = np.zeros(columns - 1)
    previous = np.zeros(p + 1)  # I[s, 1] = 0: one column carries no information
    current = np.empty(p + 1)
    for level in range(2, columns + 1):
        if level > p:  # no more boundaries than groups: the information stops growing
            best[level - 2] = best[level - 3] if level > 2 else 0.0
            continue
        current[:] = -np.inf
        for t in range(level, p + 1):
            gain = -np.inf
            for s in range(level - 1, t + 1):
                candidate = c[s] * (previous[s] - h_rows[s]) - weighted[s, t]
                if candidate > gain:
                    gain = candidate
            current[t] = h_rows[t] + gain / c[t]
        best[level - 2] = current[p]
        previous, current = current, previous
    return best
