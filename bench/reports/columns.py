"""Short column names for score keys (``dci@reg.disentanglement`` -> ``DCI-D``) and the legend that maps
them back.

A score key is ``<family>@<variant>.<score>``; the short name comes from the family and the score
(``SHORT``), so the variants of one family share it. When two keys of one report would get the same
short name (``dci@reg`` and ``dci@dlib`` side by side), each gets its variant appended:
``DCI-D (reg)``. A key not in ``SHORT`` keeps its score name.
"""

from __future__ import annotations

from dataclasses import dataclass

from crlbench.reports.stats import direction

SHORT = {
    ("dci", "disentanglement"): "DCI-D",
    ("dci", "completeness"): "DCI-C",
    ("dci", "informativeness_test"): "DCI-I",
    ("dci", "informativeness_train"): "DCI-I train",
    ("mcc", "mcc"): "MCC",
    ("irs", "irs"): "IRS",
    ("mic", "mic"): "MIC",
    ("mic", "tic"): "TIC",
    ("mig", "mig"): "MIG",
    ("sap", "sap"): "SAP",
    ("modularity", "modularity"): "Mod.",
    ("modularity", "explicitness_test"): "Expl.",
    ("r2", "r2"): "R²",
    ("counterfactual", "reconstruction_mse"): "Null-do MSE",
    ("counterfactual", "counterfactual_mse"): "CF MSE",
    ("counterfactual", "target_error"): "Target err.",
    ("counterfactual", "non_descendant_shift"): "ND shift",
    ("graph", "shd"): "SHD",
    ("graph", "shd_normalised"): "SHD/pair",
    ("graph", "auroc"): "Edge AUROC",
    ("reconstruction", "mse"): "Recon. MSE",
}
DIRECTION_TEXT = {"max": "higher is better", "min": "lower is better"}


@dataclass(frozen=True)
class Column:
    """One score column: its key, short name and direction (``max`` or ``min``)."""

    key: str
    short: str
    direction: str

    @property
    def better(self) -> str:
        return DIRECTION_TEXT[self.direction]


def split_key(key: str) -> tuple[str, str, str]:
    """``dci@reg.disentanglement`` -> ``("dci", "reg", "disentanglement")``; missing parts are empty."""
    metric, _, score = key.partition(".")
    family, _, variant = metric.partition("@")
    return family, variant, score


def short_name(key: str) -> str:
    family, _, score = split_key(key)
    return SHORT.get((family, score), score or key)


def columns(keys: list[str]) -> list[Column]:
    """The columns of ``keys``, short names made distinct by their variant where two would collide."""
    names = [short_name(key) for key in keys]
    shared = {name for name in names if names.count(name) > 1}
    distinct = [f"{name} ({split_key(key)[1] or key})" if name in shared else name for name, key in zip(names, keys)]
    return [Column(key, name, direction(key)) for key, name in zip(keys, distinct)]
