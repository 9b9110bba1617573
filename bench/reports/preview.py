"""Sample grids of a dataset: random samples, then one strip of ground-truth interventions per factor.

Each strip takes the first shown sample and renders ``do(factor = v)`` for values spread over the
factor's declared range, descendants recomputed from the sample's own noise.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

LABEL_WIDTH = 190
PADDING = 4
HEADER = 22
TEXT_COLOUR, BACKGROUND = (20, 20, 20), (255, 255, 255)


def dataset_preview(dataset, split: str = "train", count: int = 8, scale: int = 2, seed: int = 0) -> Image.Image:
    """A PIL image: ``count`` samples of ``split``, then an intervention strip per factor."""
    data = dataset.split(split)
    picks = np.random.default_rng(seed).choice(len(data), size=min(count, len(data)), replace=False)
    rows = [(f"{split} samples", data.images[picks])]
    base_factors, base_noise = data.factors[picks[:1]], data.noise[picks[:1]]
    for factor in dataset.card.factors:
        values = factor.sweep(count)
        factors = np.repeat(base_factors, len(values), axis=0)
        noise = np.repeat(base_noise, len(values), axis=0)
        after = dataset.intervene(factors, noise, factor.name, values)
        label = f"do({factor.name})\n{values[0]:.3g} .. {values[-1]:.3g}"
        rows.append((label, dataset.render(after, noise)))
    return _compose(rows, scale, title=f"{dataset.name} v{dataset.version}")


def _compose(rows: list[tuple[str, np.ndarray]], scale: int, title: str) -> Image.Image:
    tile = rows[0][1].shape[1] * scale
    columns = max(len(images) for _, images in rows)
    width = LABEL_WIDTH + columns * (tile + PADDING)
    height = HEADER + len(rows) * (tile + PADDING)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PADDING, 4), title, fill=TEXT_COLOUR)
    for r, (label, images) in enumerate(rows):
        top = HEADER + r * (tile + PADDING)
        draw.multiline_text((PADDING, top + tile // 3), label, fill=TEXT_COLOUR)
        for c, image in enumerate(images):
            picture = Image.fromarray(image).resize((tile, tile), Image.NEAREST)
            canvas.paste(picture, (LABEL_WIDTH + c * (tile + PADDING), top))
    return canvas
