"""Graph recovery: the causal graph a model learned against the dataset card's graph.

Protocol (``graph@card``, version 1):

1. ``model.learned_graph()`` (:class:`crlbench.training.model.CausalModel`) gives the method's own
   graph over its causal variables, ``{"adjacency": [V, V] 0/1, "scores": [V, V] or None}`` with
   ``A[i, j] = 1`` meaning i -> j, the card's orientation: read off its weights (CausalVAE, DEAR) or
   inferred from training data when training ended (ILCM, ``on_train_end``). A model that learns no
   graph (None: beta-VAE; ICM-VAE, which is given the true graph) is not applicable
   (:class:`crlbench.core.errors.NotApplicable`), not failed.
2. Variables become factors: variable k is factor k for an aligned model; for an unaligned one factor k
   is code ``factor_codes[k]`` (:meth:`~crlbench.training.model.CausalModel.set_alignment`), so the
   learned graph over factors is ``G[codes[a], codes[b]]``. Where two factors share a code, the pair's
   entries are undefined: left out of every score (and NaN in the matrices), with a note.
3. Scores over the defined pairs:
   ``shd``: the structural Hamming distance (Tsamardinos, Brown & Aliferis, Machine Learning 65, 2006,
   section 5: the edge additions, deletions and reversals that turn one DAG into the other), counted
   per unordered pair {i, j}: 1 when the pair's learned entries (A_ij, A_ji) differ from the true ones,
   so a reversed edge counts once. This is ``cdt.metrics.SHD(target, pred, double_for_anticausal=False)``
   (Causal Discovery Toolbox, ``cdt/metrics.py``) and causal-learn's ``causallearn.graph.SHD``; cdt's
   default (``double_for_anticausal=True``) would count a reversal twice.
   ``shd_normalised`` = shd / the number of unordered pairs scored (K(K-1)/2 when every pair is
   defined), in [0, 1]: the fraction of pairs the learned graph gets wrong.
   ``auroc``: ``sklearn.metrics.roc_auc_score`` of the edge scores against the true edges over the
   off-diagonal entries, direction-aware (entry (i, j) is the score of i -> j, so a reversed edge
   scores as a miss and a false edge). Absent when the model gives no scores, and absent with a note
   when the scored entries hold only one class (a true graph without edges, or every entry an edge),
   where the AUROC is undefined.
   ``edges_learned``, ``edges_true``: edges among the defined entries.
   Matrices: ``adjacency`` and ``scores`` (when given), the learned graph in the card's factor order
   (rows parents, columns children); for an unaligned model also ``model_adjacency`` and
   ``model_scores`` over its own codes.

Randomness: none (the graph is the model's).
"""

from __future__ import annotations

import numpy as np

from crlbench.core.errors import ConfigError, NotApplicable
from crlbench.metrics.base import MetricResult, variant


def structural_hamming_distance(learned: np.ndarray, true: np.ndarray, defined: np.ndarray | None = None) -> int:
    """The number of unordered pairs {i, j}, i < j, whose entries (A_ij, A_ji) differ between the 0/1
    adjacency matrices ``learned`` and ``true`` (a missing, an extra or a reversed edge each count 1).
    ``defined`` [K, K] bool restricts the count to pairs with ``defined[i, j]``."""
    learned, true = np.asarray(learned) != 0, np.asarray(true) != 0
    differs = (learned != true) | (learned != true).T
    upper = np.triu(np.ones(differs.shape, dtype=bool), k=1)
    if defined is not None:
        upper &= np.asarray(defined, dtype=bool)
    return int(np.count_nonzero(differs & upper))


def edge_auroc(scores: np.ndarray, true: np.ndarray, defined: np.ndarray | None = None) -> float | None:
    """ROC AUC of ``scores`` [K, K] (entry (i, j) the score of i -> j) against the 0/1 ``true`` adjacency
    over the off-diagonal (and ``defined``) entries; None when those entries hold a single class."""
    from sklearn.metrics import roc_auc_score

    mask = ~np.eye(len(true), dtype=bool)
    if defined is not None:
        mask &= np.asarray(defined, dtype=bool)
    labels = (np.asarray(true) != 0)[mask]
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels.astype(int), np.asarray(scores, dtype=np.float64)[mask]))


def checked_graph(graph, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's adjacency [V, V] (0/1) and scores (or None), validated once."""
    where = f"metric 'graph@card': model {name!r}: learned_graph()"
    if not isinstance(graph, dict) or "adjacency" not in graph:
        raise ConfigError(f"{where} must return None or a dict with 'adjacency' and 'scores'; "
                          f"got {type(graph).__name__}")
    adjacency = np.asarray(graph["adjacency"], dtype=np.float64)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ConfigError(f"{where}['adjacency'] must be a square [V, V] array; got shape {adjacency.shape}")
    if not np.isin(adjacency, (0.0, 1.0)).all():
        raise ConfigError(f"{where}['adjacency'] must hold only 0 and 1")
    scores = graph.get("scores")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != adjacency.shape or not np.isfinite(scores).all():
            raise ConfigError(f"{where}['scores'] must be None or finite with the adjacency's shape "
                              f"{adjacency.shape}; got shape {scores.shape}")
    return adjacency.astype(int), scores


def factor_codes(model, variables: int, factors: int, notes: list[str]) -> np.ndarray:
    """The model variable of each factor: itself (aligned) or its matched code (unaligned)."""
    name = getattr(model, "name", type(model).__name__)
    if getattr(model, "aligned", True):
        if variables != factors:
            raise ConfigError(f"metric 'graph@card': aligned model {name!r} gave a graph over {variables} variables; "
                              f"the dataset has {factors} factors")
        return np.arange(factors)
    codes = np.array([model.matched_code(k) for k in range(factors)])  # the model contract's alignment
    if codes.max() >= variables:
        raise ConfigError(f"metric 'graph@card': model {name!r}: factor_codes {codes.tolist()} name a code beyond "
                          f"its graph's {variables} variables")
    for code in np.unique(codes):
        shared = np.flatnonzero(codes == code)
        if len(shared) > 1:
            notes.append(f"factors {shared.tolist()} share code {int(code)}: their pairs are undefined and left out "
                         "of shd, shd_normalised, auroc and the edge counts")
    return codes


@variant("graph@card", needs_model=True)
def graph_card(model, dataset, train, test, *, seed):
    """The learned causal graph against the card's: SHD (a reversal counts once), normalised, and edge AUROC."""
    name = getattr(model, "name", type(model).__name__)
    graph = model.learned_graph()
    if graph is None:
        raise NotApplicable(f"model {name!r} learns no causal graph")
    adjacency, scores = checked_graph(graph, name)
    true = np.asarray(dataset.card.adjacency, dtype=int)
    factors, notes = len(true), []
    codes = factor_codes(model, len(adjacency), factors, notes)
    defined = (codes[:, None] != codes[None, :])  # the diagonal too is undefined: no self-loops are scored
    learned = adjacency[np.ix_(codes, codes)]
    pairs = int(np.count_nonzero(np.triu(defined, k=1)))
    shd = structural_hamming_distance(learned, true, defined)
    result = {"shd": float(shd), "edges_learned": float(learned[defined].sum()),
              "edges_true": float(true[defined].sum())}
    if pairs:
        result["shd_normalised"] = shd / pairs
    else:
        notes.append("no pair of factors is defined: shd_normalised is left out")

    def in_factor_order(matrix: np.ndarray) -> np.ndarray:
        out = matrix[np.ix_(codes, codes)].astype(np.float64)
        out[~defined & ~np.eye(factors, dtype=bool)] = np.nan
        np.fill_diagonal(out, 0.0)
        return out

    matrices = {"adjacency": in_factor_order(adjacency)}
    if scores is not None:
        matrices["scores"] = in_factor_order(scores)
        auroc = edge_auroc(scores[np.ix_(codes, codes)], true, defined)
        if auroc is None:
            notes.append("the true graph has no edges, or every scored entry is an edge: auroc is undefined and "
                         "left out")
        else:
            result["auroc"] = auroc
    if not getattr(model, "aligned", True):
        matrices["model_adjacency"] = adjacency.astype(np.float64)
        if scores is not None:
            matrices["model_scores"] = scores
    return MetricResult(result, matrices, notes)
