"""Pictures for the app: faces boxed, numbered and landmarked; gallery thumbnails; similarity over
time for video hits.

Pure functions from data to PIL images, no UI framework: the app and the CLI can both use them.
Plots use matplotlib's object API on an Agg canvas (never pyplot), because pyplot keeps global
state and the app draws from several request threads at once.
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
SEGMENT = "#f5b400"
CURVE = "#1f6fd1"


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
        font_size = round(min(max((y2 - y1) * 0.28, side / 45, 12), side / 14))
        _label(draw, (x1, y1), text, color, font_size)
    return out




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


def similarity_plot(
    curve: Sequence[tuple[float, float]],
    segments: Sequence[tuple[float, float]] = (),
    best_times: Sequence[float] = (),
    threshold: float | None = None,
    duration: float | None = None,
    ylabel: str = "similarity",
    title: str = "",
    size: tuple[int, int] = (960, 300),
) -> Image.Image:
    """Similarity over time as a PIL image: the curve (NaN = no score, drawn as gaps), matching
    segments shaded, best frames marked, and the match threshold as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    t = np.array([p[0] for p in curve], np.float64)
    y = np.array([np.nan if p[1] is None else p[1] for p in curve], np.float64)
    end = duration if duration and duration > 0 else (float(t.max()) if len(t) else 1.0)
    for a, b in segments:
        # A one-sample segment still gets a visible band.
        pad = max(0.0, (end / 400) - (b - a) / 2)
        ax.axvspan(a - pad, b + pad, color=SEGMENT, alpha=0.28, lw=0)
    if len(t):
        ax.plot(t, y, color=CURVE, lw=1.6, marker="." if len(t) < 80 else None, ms=4)
    for bt in best_times:
        ax.axvline(bt, color="#d9480f", lw=1.2, alpha=0.9)
    if threshold is not None:
        ax.axhline(threshold, color="#555", lw=1, ls="--")
        ax.text(end, threshold, " threshold", va="center", ha="left", fontsize=8, color="#555", clip_on=False)
    finite = y[np.isfinite(y)]
    lo = min(0.0, float(finite.min()) - 0.05) if finite.size else 0.0
    hi = max(1.0, float(finite.max()) + 0.05) if finite.size else 1.0
    ax.set_ylim(lo, hi)
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.25)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())
    return Image.fromarray(buf[..., :3].copy())
