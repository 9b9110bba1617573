"""Directed acyclic graphs as adjacency matrices, ``A[i, j] != 0`` meaning i -> j."""

from __future__ import annotations

import numpy as np


def topological_levels(graph: np.ndarray) -> list[list[int]]:
    """Nodes grouped so that each group's parents all lie in earlier groups; ValueError on a cycle."""
    graph = np.asarray(graph) != 0
    remaining, done, levels = set(range(len(graph))), set(), []
    while remaining:
        level = sorted(i for i in remaining if set(np.flatnonzero(graph[:, i])) <= done)
        if not level:
            raise ValueError(f"the graph has a cycle among nodes {sorted(remaining)}")
        levels.append(level)
        done.update(level)
        remaining -= set(level)
    return levels


def descendants(graph: np.ndarray, node: int) -> set[int]:
    """Every node reachable from ``node``."""
    graph, found, frontier = np.asarray(graph) != 0, set(), [node]
    while frontier:
        children = [int(c) for c in np.flatnonzero(graph[frontier.pop()]) if c not in found]
        found.update(children)
        frontier.extend(children)
    return found
