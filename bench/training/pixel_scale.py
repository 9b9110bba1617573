"""The pixel-scale rule: a reconstruction summed over pixels weighs against the KL terms as it does at the
reference method's image size, whatever size crlbench trains at.

A log-likelihood summed over the H x W pixels of an image grows with H x W while the KL terms do not, so a KL
weight set at 64x64 (beta-VAE's beta = 4 in disentanglement_lib) weighs 4 times more at 32x32. ``reference``
multiplies the summed reconstruction by (reference pixels) / (this image's pixels): the balance the reference
tuned, at any size (at the reference size the factor is 1 and nothing changes). ``sum``: the plain sum.
"""

from __future__ import annotations

PIXEL_SCALES = ("reference", "sum")


def pixel_scale(rule: str, image_size: int, reference_size: int) -> float:
    """The factor on a reconstruction summed over ``image_size`` x ``image_size`` pixels: (reference_size /
    image_size)^2 under ``"reference"``, 1 under ``"sum"``."""
    if rule == "sum":
        return 1.0
    return (reference_size * reference_size) / (image_size * image_size)
