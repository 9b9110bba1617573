"""MIC and TIC between codes and factors, reduced to one score in three named ways.

The statistics come from :mod:`crlbench.metrics.mine` (minepy's defaults: APPROX-MIC, alpha 0.6,
c 15; ``est="mic_e"`` for MIC_e / TIC_e). TIC is reported normalised (divided by the number of
characteristic-matrix entries, so in [0, 1]); the raw sums are kept as ``tic_raw``. CausalVAE and
ICM-VAE publish MIC/TIC without code, so none of the reductions below is known to be theirs:

* ``mic@aligned``: concept block k (``block_size`` codes) goes with factor k (supervised
  alignment); a block is reduced by its mean code (``block_reduce="mean"``) or by its best single
  code (``"best"``); scores are the means over factors.
* ``mic@matched``: the full code x factor matrix, then the Hungarian assignment on MIC; scores are
  the means over the matched pairs (for unsupervised models such as beta-VAE).
* ``mic@flat``: the legacy protocol of scripts derived from CausalVAE: the aligned codes and the
  factors, each flattened sample-major into one vector, give one MIC and one TIC.
"""

from __future__ import annotations

import numpy as np

from crlbench.core.errors import ConfigError
from crlbench.core.lazy import lazy_module
from crlbench.metrics import alignment
from crlbench.metrics.base import MetricResult, variant

ESTIMATORS = ("mic_approx", "mic_e")
BLOCK_REDUCTIONS = ("mean", "best")
mine = lazy_module("crlbench.metrics.mine")  # numba, imported when a score is computed


def mine_matrices(z: np.ndarray, y: np.ndarray, alpha: float, c: float, est: str) -> dict[str, np.ndarray]:
    """MIC, normalised TIC and raw TIC for every (code, factor) pair, [codes x factors]."""
    mic, tic, tic_raw = (np.zeros((z.shape[1], y.shape[1])) for _ in range(3))
    for i in range(z.shape[1]):
        for k in range(y.shape[1]):
            score = mine.mine_score(z[:, i], y[:, k], alpha=alpha, c=c, est=est)
            mic[i, k], tic[i, k], tic_raw[i, k] = score.mic, score.tic(norm=True), score.tic()
    return {"mic": mic, "tic": tic, "tic_raw": tic_raw}


def _check(name: str, alpha, c, est) -> None:
    if est not in ESTIMATORS:
        raise ConfigError(f"metric {name!r}: option 'est' must be one of {', '.join(ESTIMATORS)}; got {est!r}")
    if not (0 < alpha <= 1 or alpha >= 4):
        raise ConfigError(f"metric {name!r}: option 'alpha' must be in (0, 1] or at least 4; got {alpha!r}")
    if not c > 0:
        raise ConfigError(f"metric {name!r}: option 'c' must be positive; got {c!r}")


def _aligned_codes(name, z, y, block_size, notes) -> tuple[np.ndarray, alignment.Alignment]:
    """The codes of the supervised concept blocks (trailing codes outside every block are noted)."""
    used = y.shape[1] * block_size if isinstance(block_size, int) else -1
    if used <= 0 or used > z.shape[1]:
        raise ConfigError(
            f"metric {name!r}: option 'block_size' must give each of the {y.shape[1]} factors a block of "
            f"codes within the {z.shape[1]} codes; got {block_size!r}"
        )
    if used < z.shape[1]:
        notes.append(f"codes {list(range(used, z.shape[1]))} belong to no concept block and are ignored")
    return z[:, :used], alignment.supervised(used, y.shape[1], block_size, f"metric {name!r}")


@variant("mic@aligned", option_types={"c": float}, alpha=0.6, c=15, est="mic_approx", block_size=1, block_reduce="mean")
def mic_aligned(z_train, y_train, z_test, y_test, *, seed, alpha, c, est, block_size, block_reduce):
    """MIC/TIC of concept block k against factor k, averaged over factors."""
    _check("mic@aligned", alpha, c, est)
    if block_reduce not in BLOCK_REDUCTIONS:
        raise ConfigError(f"metric 'mic@aligned': option 'block_reduce' must be one of mean, best; got {block_reduce!r}")
    notes: list[str] = []
    codes, aligned = _aligned_codes("mic@aligned", z_train, y_train, block_size, notes)
    factors = y_train.shape[1]
    if block_reduce == "mean":
        codes = codes.reshape(len(codes), factors, block_size).mean(axis=2)
        blocks = [(k,) for k in range(factors)]
    else:
        blocks = aligned.blocks
    matrices = mine_matrices(codes, y_train, alpha, c, est)
    chosen = [max(block, key=lambda code: matrices["mic"][code, k]) for k, block in enumerate(blocks)]
    scores = {
        "mic": float(np.mean([matrices["mic"][code, k] for k, code in enumerate(chosen)])),
        "tic": float(np.mean([matrices["tic"][code, k] for k, code in enumerate(chosen)])),
    }
    result = MetricResult(scores, matrices, notes)
    result.info["alignment"] = aligned.to_dict()
    return result


@variant("mic@matched", option_types={"c": float}, alpha=0.6, c=15, est="mic_approx")
def mic_matched(z_train, y_train, z_test, y_test, *, seed, alpha, c, est):
    """MIC/TIC of the Hungarian-matched (code, factor) pairs, averaged."""
    _check("mic@matched", alpha, c, est)
    matrices = mine_matrices(z_train, y_train, alpha, c, est)
    matching = alignment.matched(matrices["mic"])
    pairs = [(block[0], k) for k, block in enumerate(matching.blocks) if block]
    scores = {key: float(np.mean([matrices[key][i, k] for i, k in pairs])) for key in ("mic", "tic")}
    matrices["assignment"] = matching.matrix(z_train.shape[1])
    result = MetricResult(scores, matrices)
    result.info["alignment"] = matching.to_dict()
    return result


@variant("mic@flat", option_types={"c": float}, alpha=0.6, c=15, est="mic_approx", block_size=1)
def mic_flat(z_train, y_train, z_test, y_test, *, seed, alpha, c, est, block_size):
    """Legacy MIC/TIC of the flattened aligned codes against the flattened factors."""
    _check("mic@flat", alpha, c, est)
    notes: list[str] = []
    codes, aligned = _aligned_codes("mic@flat", z_train, y_train, block_size, notes)
    factors = y_train.shape[1]
    codes = codes.reshape(len(codes), factors, block_size).mean(axis=2)
    notes.append("legacy protocol: codes and factors flattened sample-major into one vector each")
    score = mine.mine_score(codes.ravel(), y_train.ravel(), alpha=alpha, c=c, est=est)
    matrices = {"mic": np.array([[score.mic]]), "tic": np.array([[score.tic(norm=True)]]),
                "tic_raw": np.array([[score.tic()]])}
    result = MetricResult({"mic": score.mic, "tic": score.tic(norm=True)}, matrices, notes)
    result.info["alignment"] = aligned.to_dict()
    return result
