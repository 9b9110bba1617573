"""Vectorised numpy rasteriser: one call draws one primitive on every image of a batch.

Anti-aliasing is analytic: a pixel's coverage by a shape is ``clip(0.5 - d, 0, 1)``, where ``d`` is the
signed distance (in pixels, negative inside) from the pixel centre to the shape's edge; this is a
one-pixel box filter of the exact coverage for edges that are straight at the pixel scale.

Coordinates are pixel coordinates: ``x`` is the column, ``y`` the row (pointing down), and pixel
``(row, col)`` spans ``[col, col + 1) x [row, row + 1)``. Geometry is given per image as arrays of
shape ``[N]`` (``[N, M]`` for polylines); colours are RGB floats in ``[0, 1]``, either one triple for
the whole batch or ``[N, 3]``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Cap = Literal["butt", "projecting", "round"]
Window = tuple[slice, slice]  # rows, columns
FULL: Window = (slice(None), slice(None))
Color = tuple[float, float, float] | np.ndarray


def rgb(red: int, green: int, blue: int) -> tuple[float, float, float]:
    """An 8-bit colour as floats in [0, 1] (matplotlib's named colours are 8-bit)."""
    return (red / 255.0, green / 255.0, blue / 255.0)


class Canvas:
    """A batch of ``n`` RGB images of ``height x width`` pixels, painted in drawing order.

    ``clip_box`` (left, top, right, bottom) in pixels limits every later primitive to that box, as
    matplotlib clips artists to the axes; pixels cut by the box edge get fractional coverage.
    """

    def __init__(
        self,
        n: int,
        height: int,
        width: int,
        background: Color,
        clip_box: tuple[float, float, float, float] | None = None,
    ) -> None:
        self.pixels = np.empty((n, height, width, 3), dtype=np.float32)
        self.pixels[...] = _batch_color(background, n)
        self._x = (np.arange(width, dtype=np.float32) + 0.5)[None, None, :]
        self._y = (np.arange(height, dtype=np.float32) + 0.5)[None, :, None]
        self._clip = None if clip_box is None else _box_coverage(clip_box, height, width)

    @property
    def n(self) -> int:
        return self.pixels.shape[0]

    def paint(self, coverage: np.ndarray, color: Color, window: Window = FULL) -> None:
        """Composite ``color`` with per-pixel opacity ``coverage`` [N, h, w] over ``window``."""
        if self._clip is not None:
            coverage = coverage * self._clip[(slice(None), *window)]
        color = _batch_color(color, self.n)
        pixels = self.pixels[(slice(None), *window)]
        pixels += coverage[..., None] * (color - pixels)

    def window(self, xs, ys, pad) -> Window:
        """The rows and columns within ``pad`` pixels of any of the points, over the whole batch.

        Primitives are evaluated only there: a small shape on a large canvas costs little.
        """
        height, width = self.pixels.shape[1:3]
        xs, ys = np.asarray(xs), np.asarray(ys)
        pad = float(np.max(pad)) + 1.0
        left = int(np.clip(np.floor(xs.min() - pad), 0, width))
        right = int(np.clip(np.ceil(xs.max() + pad), left, width))
        top = int(np.clip(np.floor(ys.min() - pad), 0, height))
        bottom = int(np.clip(np.ceil(ys.max() + pad), top, height))
        return (slice(top, bottom), slice(left, right))

    def add_light(self, light: np.ndarray) -> None:
        """Add ``light`` [N, H, W, 3] to the canvas (saturating at 1), e.g. a glow."""
        np.clip(self.pixels + light, 0.0, 1.0, out=self.pixels)

    def fill_rect(self, left, top, right, bottom, color: Color) -> None:
        """Fill an axis-aligned rectangle (exact area coverage)."""
        window = self.window([np.min(left), np.max(right)], [np.min(top), np.max(bottom)], 0.0)
        x, y = self._grid(window)
        left, top, right, bottom = (_col(v) for v in (left, top, right, bottom))
        cover_x = np.clip(np.minimum(x + 0.5, right) - np.maximum(x - 0.5, left), 0.0, 1.0)
        cover_y = np.clip(np.minimum(y + 0.5, bottom) - np.maximum(y - 0.5, top), 0.0, 1.0)
        self.paint(cover_x * cover_y, color, window)

    def fill_ellipse(self, cx, cy, rx, ry, color: Color) -> None:
        """Fill an axis-aligned ellipse (a circle in data units under an unequal aspect)."""
        cx, cy = np.asarray(cx), np.asarray(cy)
        window = self.window([cx.min(), cx.max()], [cy.min(), cy.max()], max(np.max(rx), np.max(ry)))
        distance = self.ellipse_distance(cx, cy, rx, ry, window)
        self.paint(_coverage(distance), color, window)

    def stroke_segment(self, x0, y0, x1, y1, width, color: Color, cap: Cap = "butt") -> None:
        """Stroke the segment (x0, y0)-(x1, y1) with a pen ``width`` pixels wide."""
        window = self.window([np.min(x0), np.max(x0), np.min(x1), np.max(x1)],
                             [np.min(y0), np.max(y0), np.min(y1), np.max(y1)], np.max(width))
        distance = self.segment_distance(x0, y0, x1, y1, width, cap, window=window)
        self.paint(_coverage(distance), color, window)

    def stroke_polyline(self, xs, ys, width, color: Color, cap: Cap = "projecting") -> None:
        """Stroke a polyline [N, M] with round joins and the given end caps (matplotlib's Line2D)."""
        xs, ys = np.asarray(xs, np.float32), np.asarray(ys, np.float32)
        window = self.window(xs, ys, np.max(width))
        distance = None
        for k in range(xs.shape[1] - 1):
            part = self.segment_distance(
                xs[:, k], ys[:, k], xs[:, k + 1], ys[:, k + 1], width, "round", window=window
            )
            distance = part if distance is None else np.minimum(distance, part, out=distance)
        if cap != "round":
            for inner, outer in ((1, 0), (-2, -1)):
                end = self.segment_distance(xs[:, inner], ys[:, inner], xs[:, outer], ys[:, outer],
                                            width, cap, one_end=True, window=window)
                np.minimum(distance, end, out=distance)
        self.paint(_coverage(distance), color, window)

    def ellipse_distance(self, cx, cy, rx, ry, window: Window = FULL) -> np.ndarray:
        """Signed distance [N, h, w] to an ellipse edge, to first order (exact for circles)."""
        x, y = self._grid(window)
        cx, cy, rx, ry = (_col(v) for v in (cx, cy, rx, ry))
        u = (x - cx) / rx
        v = (y - cy) / ry
        radius = np.hypot(u, v)
        gradient = np.hypot(u / rx, v / ry) / np.maximum(radius, 1e-6)
        gradient = np.where(radius > 1e-6, gradient, 1.0 / np.maximum(rx, ry))
        return (radius - 1.0) / gradient

    def segment_distance(
        self, x0, y0, x1, y1, width, cap: Cap, one_end: bool = False, window: Window = FULL
    ) -> np.ndarray:
        """Signed distance [N, h, w] to a stroked segment.

        ``butt`` ends at the endpoints, ``projecting`` extends both ends by half the width, ``round``
        is a capsule. With ``one_end`` only the (x1, y1) end gets the cap (the other is butt), which
        is how a polyline's first and last segments are capped.
        """
        x, y = self._grid(window)
        x0, y0, x1, y1, width = (_col(v) for v in (x0, y0, x1, y1, width))
        half_width = width / 2.0
        dx, dy = x1 - x0, y1 - y0
        length = np.maximum(np.hypot(dx, dy), 1e-6)
        ux, uy = dx / length, dy / length
        px, py = x - x0, y - y0
        along = px * ux + py * uy
        across = np.abs(px * uy - py * ux)
        if cap == "round":
            t = np.clip(along, 0.0, length)
            return np.hypot(along - t, across) - half_width
        start_cap = half_width if cap == "projecting" and not one_end else 0.0
        end_cap = half_width if cap == "projecting" else 0.0
        low, high = -start_cap, length + end_cap
        centre, half_length = (low + high) / 2.0, (high - low) / 2.0
        qx = np.abs(along - centre) - half_length
        qy = across - half_width
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        return outside + np.minimum(np.maximum(qx, qy), 0.0)

    def _grid(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates of the window, shaped to broadcast against [N, h, w]."""
        return self._x[:, :, window[1]], self._y[:, window[0], :]

    def to_uint8(self) -> np.ndarray:
        """The images as uint8 [N, H, W, 3], rounded to nearest."""
        return np.clip(np.rint(self.pixels * 255.0), 0, 255).astype(np.uint8)


def snap(coordinate) -> np.ndarray:
    """Move a coordinate to the nearest pixel centre, as matplotlib snaps axis-aligned strokes."""
    return np.floor(np.asarray(coordinate, dtype=np.float64) + 0.5) + 0.5


def axes_box(left: float, top: float, right: float, bottom: float) -> tuple[float, float, float, float]:
    """A clip box with its edges on pixel boundaries, as matplotlib clips to the axes."""
    return tuple(float(np.round(edge)) for edge in (left, top, right, bottom))


def _col(value) -> np.ndarray:
    """Per-image scalars as a column broadcastable against [N, H, W]."""
    value = np.asarray(value, dtype=np.float32)
    return value.reshape(-1, 1, 1) if value.ndim else value


def _coverage(distance: np.ndarray) -> np.ndarray:
    return np.clip(0.5 - distance, 0.0, 1.0)


def _batch_color(color: Color, n: int) -> np.ndarray:
    color = np.asarray(color, dtype=np.float32)
    return color.reshape(n, 1, 1, 3) if color.ndim == 2 else color


def _box_coverage(box: tuple[float, float, float, float], height: int, width: int) -> np.ndarray:
    left, top, right, bottom = box
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)
    cover_x = np.clip(np.minimum(x + 1, right) - np.maximum(x, left), 0.0, 1.0)
    cover_y = np.clip(np.minimum(y + 1, bottom) - np.maximum(y, top), 0.0, 1.0)
    return (cover_y[:, None] * cover_x[None, :])[None]
