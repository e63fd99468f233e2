"""Pictures for the app: faces boxed, numbered and landmarked (and which face a tap on them
means); gallery thumbnails. Similarity over time is a browser-drawn chart (rvs.app.chart).

Pure functions from data to PIL images, no UI framework: the app and the CLI can both use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rvs.video.results import clock

# Face colours: the first is the "selected" accent; the rest cycle for the other faces.
ACCENT = (255, 196, 0)
PALETTE = [(0, 190, 255), (80, 220, 120), (255, 100, 160), (190, 140, 255), (255, 140, 60), (120, 230, 230)]
LANDMARK = (255, 60, 60)


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans Bold at `size` px when available (Debian ships it with matplotlib), else PIL's default."""
    try:
        from matplotlib import font_manager

        path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold"), fallback_to_default=True)
        return ImageFont.truetype(path, size)
    except Exception:  # no matplotlib / no font file: still draw something legible
        return ImageFont.load_default(size=size)


def fit(image: Image.Image, max_side: int, min_side: int = 0) -> tuple[Image.Image, float]:
    """A copy resized so its long side is at most `max_side` (and at least `min_side`: small
    photos are enlarged so boxes and labels drawn on them stay crisp), and the scale applied."""
    side = max(image.size)
    if side > max_side:
        s = max_side / side
    elif min_side and side < min_side:
        s = min_side / side
    else:
        return image.copy(), 1.0
    return image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))), Image.LANCZOS), s


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, color: tuple[int, int, int], size: int) -> None:
    """A filled tag with dark text, placed above the point (inside the image when there is no room)."""
    font = _font(size)
    x, y = xy
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 5)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    y0 = y - h if y - h >= 0 else y
    draw.rectangle([x, y0, x + w, y0 + h], fill=color)
    draw.text((x + pad - left, y0 + pad - top), text, fill=(15, 15, 15), font=font)


def draw_faces(
    image: Image.Image,
    boxes: Sequence[Sequence[float]],
    landmarks: Sequence[np.ndarray | None] | None = None,
    selected: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    max_side: int = 1024,
    min_side: int = 512,
) -> Image.Image:
    """`image` (downscaled to `max_side`) with each face boxed and numbered 1..n, landmarks dotted.

    boxes / landmarks: in pixels of `image`. selected: 0-based indices drawn in the accent colour
    with a thicker line (the faces being searched); None = all. labels: text per face
    (default "1", "2", ...).
    """
    out, s = fit(image.convert("RGB"), max_side, min_side)
    draw = ImageDraw.Draw(out)
    side = max(out.size)
    width = max(2, round(side / 220))
    chosen = set(range(len(boxes))) if selected is None else set(selected)
    for i, box in enumerate(boxes):
        color = ACCENT if i in chosen else PALETTE[i % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) * s for v in box)
        w = width + 1 if i in chosen else width
        draw.rectangle([x1, y1, x2, y2], outline=color, width=w)
        if landmarks is not None and i < len(landmarks) and landmarks[i] is not None:
            r = max(2.0, (x2 - x1) / 40)
            for lx, ly in np.asarray(landmarks[i], np.float32).reshape(-1, 2) * s:
                draw.ellipse([lx - r, ly - r, lx + r, ly + r], fill=LANDMARK, outline=(255, 255, 255))
        text = labels[i] if labels is not None else str(i + 1)
        # Label size follows the face (legible on a close-up, not covering a crowd), within bounds.
        # Numbers at least 1/26 of the picture: ~16 px when a phone shows it 400 px wide.
        font_size = round(min(max((y2 - y1) * 0.28, side / 26, 14), side / 12))
        _label(draw, (x1, y1), text, color, font_size)
    return out




def face_at(boxes: Sequence[Sequence[float]], x: float, y: float) -> int | None:
    """The face (0-based) a tap at (x, y) on the drawn picture means: the smallest box holding
    the point, else the nearest box whose centre is within one box size; None when no face is near."""
    inside = [(float((b[2] - b[0]) * (b[3] - b[1])), i) for i, b in enumerate(boxes) if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
    if inside:
        return min(inside)[1]
    best = None
    for i, b in enumerate(boxes):
        cx, cy, size = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, max(b[2] - b[0], b[3] - b[1])
        d = ((cx - x) ** 2 + (cy - y) ** 2) ** 0.5
        if d <= size and (best is None or d < best[0]):
            best = (d, i)
    return best[1] if best else None


def placeholder_tile(text: str, size: int = 192) -> Image.Image:
    """A neutral tile with `text` wrapped on it: stands in for a gallery image that is not on this
    machine (e.g. a gallery pulled from the Hub holds embeddings, not photos)."""
    tile = Image.new("RGB", (size, size), (44, 48, 56))
    draw = ImageDraw.Draw(tile)
    font = _font(max(11, size // 12))
    words, lines, cur = text.replace("_", " ").split(), [], ""
    for w in words:
        trial = f"{cur} {w}".strip()
        if draw.textlength(trial, font=font) <= size - 16 or not cur:
            cur = trial
        else:
            lines.append(cur)
            cur = w
    if cur:
        lines.append(cur)
    lines = lines[:4]
    lh = font.size + 4 if hasattr(font, "size") else 16
    y = (size - lh * len(lines)) / 2
    for line in lines:
        draw.text(((size - draw.textlength(line, font=font)) / 2, y), line, fill=(230, 230, 235), font=font)
        y += lh
    # A generic head-and-shoulders glyph, so the tile reads as "a face, not shown".
    cx = size / 2
    draw.ellipse([cx - size * 0.08, size * 0.06, cx + size * 0.08, size * 0.22], outline=(120, 126, 138), width=2)
    return tile


format_time = clock  # one time format on the page: rvs.video.results.clock
