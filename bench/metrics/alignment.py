"""Which latent codes go with which factor: the alignment rule every per-factor metric shares.

* ``supervised``: concept block k (``block_size`` consecutive codes) goes with factor k, as in the
  label-supervised models (CausalVAE, DEAR, ICM-VAE supervise latent block k with label k);
* ``matched``: each factor gets a distinct code by the Hungarian assignment maximising a
  [codes x factors] association matrix (beta-VAE and other unsupervised models);
* ``none``: no pairing (flat metrics).

The alignment is saved with the result (``info["alignment"]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from crlbench.core.errors import ConfigError
from crlbench.core.lazy import lazy_module

optimize = lazy_module("scipy.optimize")  # imported when a score is computed


@dataclass(frozen=True)
class Alignment:
    kind: Literal["supervised", "matched", "none"]
    blocks: tuple[tuple[int, ...], ...] = ()  # per factor, its codes

    def to_dict(self) -> dict:
        return asdict(self)

    def matrix(self, codes: int) -> np.ndarray:
        """The alignment as a 0/1 matrix [codes x factors]."""
        assignment = np.zeros((codes, len(self.blocks)))
        for factor, block in enumerate(self.blocks):
            assignment[list(block), factor] = 1
        return assignment


def supervised(codes: int, factors: int, block_size: int, where: str) -> Alignment:
    """Block k = codes [k * block_size, (k + 1) * block_size) goes with factor k."""
    if block_size <= 0 or codes != factors * block_size:
        raise ConfigError(
            f"{where}: option 'block_size' must split the {codes} codes into {factors} concept blocks "
            f"(codes = factors x block_size); got block_size={block_size!r}"
        )
    return Alignment("supervised", tuple(tuple(range(k * block_size, (k + 1) * block_size)) for k in range(factors)))


def matched(association: np.ndarray) -> Alignment:
    """Hungarian assignment of distinct codes to factors maximising the total association."""
    rows, columns = optimize.linear_sum_assignment(-np.nan_to_num(association))
    blocks = [()] * association.shape[1]
    for code, factor in zip(rows, columns):
        blocks[factor] = (int(code),)
    return Alignment("matched", tuple(blocks))
