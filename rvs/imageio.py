"""Reading user images safely: any mode, EXIF orientation, size limits, clear errors."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rvs.errors import BadInputError

ImageLike = str | os.PathLike | bytes | Image.Image | np.ndarray

# Large enough for any photo; the real guard is `max_pixels`, checked before decoding.
Image.MAX_IMAGE_PIXELS = None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (RGBA, LA, P, L, CMYK, I;16, I, F) to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float grey: rescale to 8 bit instead of clipping to white.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white so transparent areas do not turn black.
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def load_image(src: ImageLike, max_pixels: int = 64_000_000, name: str | None = None) -> Image.Image:
    """Load `src` (path, bytes, PIL image or HxWx3 uint8 array) as an upright 8-bit RGB image.

    Raises BadInputError with a one-line message for a missing file, a non-image, a corrupt
    file, or an image above `max_pixels` (checked from the header, before decoding).
    """
    if isinstance(src, np.ndarray):
        if src.ndim == 2:
            src = np.stack([src] * 3, axis=-1)
        if src.ndim != 3 or src.shape[2] not in (3, 4):
            raise BadInputError(f"expected an HxWx3 image array, got shape {src.shape}")
        return _to_rgb(Image.fromarray(src.astype(np.uint8)))
    if isinstance(src, Image.Image):
        _check_size(src.size, max_pixels, name or "image")
        return _to_rgb(ImageOps.exif_transpose(src))
    if isinstance(src, (bytes, bytearray)):
        fp, label = io.BytesIO(src), name or "upload"
        if not src:
            raise BadInputError(f"{label}: the file is empty (0 bytes)")
    else:
        path = Path(src)
        label = name or str(path)
        if not path.exists():
            raise BadInputError(f"{label}: file not found")
        if path.is_dir():
            raise BadInputError(f"{label}: is a directory, not an image")
        if path.stat().st_size == 0:
            raise BadInputError(f"{label}: the file is empty (0 bytes)")
        fp = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(fp)
            _check_size(img.size, max_pixels, label)
            img.load()  # force the decode here so a truncated file fails now, not later
            img = ImageOps.exif_transpose(img)
    except BadInputError:
        raise
    except UnidentifiedImageError:
        raise BadInputError(f"{label}: not an image (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInputError(f"{label}: corrupt or truncated image ({e})") from None
    except Image.DecompressionBombError as e:
        raise BadInputError(f"{label}: image too large ({e})") from None
    return _to_rgb(img)


def _check_size(size: tuple[int, int], max_pixels: int, label: str) -> None:
    w, h = size
    if w * h > max_pixels:
        raise BadInputError(
            f"{label}: image too large ({w}x{h} px = {w * h / 1e6:.0f} MP; limit {max_pixels / 1e6:.0f} MP)"
        )
    if w < 8 or h < 8:
        raise BadInputError(f"{label}: image too small ({w}x{h} px)")


def crop_box(image: Image.Image, box: Sequence[float], margin: float = 0.35, size: int = 192) -> Image.Image:
    """A square thumbnail of `box` grown by `margin` (share of the box side) on each side,
    clamped to the image, resized to `size` px."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) * (0.5 + margin)
    x0, y0 = max(0, round(cx - half)), max(0, round(cy - half))
    x1, y1 = min(image.width, round(cx + half)), min(image.height, round(cy + half))
    if x1 - x0 < 2 or y1 - y0 < 2:  # a box outside the image (bad metadata): show the whole image
        x0, y0, x1, y1 = 0, 0, image.width, image.height
    tile = image.crop((x0, y0, x1, y1))
    tile.thumbnail((size, size), Image.LANCZOS)
    # Pad to a square so the result gallery's grid stays even.
    sq = Image.new("RGB", (size, size), (24, 24, 27))
    sq.paste(tile, ((size - tile.width) // 2, (size - tile.height) // 2))
    return sq
