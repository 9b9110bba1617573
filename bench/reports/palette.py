"""One colour per model name, the same in every figure of every report.

The four built-in models have fixed colours from the Okabe-Ito palette (Okabe & Ito 2008,
"Color Universal Design"; distinguishable under the common colour-vision deficiencies). Any other
name (a plugin model, an ablation row's label) gets a colour from a SHA-256 hash of the name: stable
across runs, processes and suites, unlike Python's salted ``hash``.
"""

from __future__ import annotations

import colorsys
import hashlib

BUILT_IN = {
    "icm_vae": "#0072B2",  # blue
    "causal_vae": "#D55E00",  # vermillion
    "dear": "#009E73",  # bluish green
    "beta_vae": "#CC79A7",  # reddish purple
}
HASHED_LIGHTNESS = (0.35, 0.5)  # light enough to see, dark enough for thin lines on white
HASHED_SATURATION = 0.7


def model_colour(name: str) -> str:
    """The colour of ``name`` as ``#rrggbb``: fixed for the built-in models, hashed for any other name."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536
    low, high = HASHED_LIGHTNESS
    lightness = low + (high - low) * digest[2] / 255
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, HASHED_SATURATION)
    return "#" + "".join(f"{round(255 * channel):02x}" for channel in (red, green, blue))
