"""Thumbnails as base64 data URIs (Pillow), with a placeholder for unreadable files."""

from __future__ import annotations

import base64
import io
import logging
import os
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["data_uri", "make_readable", "resolve_image", "thumbnail_uri"]


def make_readable(path: Path) -> None:
    """Give a freshly written file the usual ``0o666 & ~umask`` mode.

    Atomic writes go through ``tempfile.mkstemp``, which creates files readable by
    their owner only; a report is meant to be shared (served, attached, copied).
    """
    umask = 0o022
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError):
        pass
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError as exc:
        logger.debug("cannot chmod %s: %s", path, exc)


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def resolve_image(path: str, *, roots: list[Path]) -> Path | None:
    """The first existing file for ``path``: as is if absolute, else under each root."""
    p = Path(path)
    if p.is_absolute():
        return p if p.is_file() else None
    for root in roots:
        q = root / p
        if q.is_file():
            return q
    return None


def thumbnail_uri(path: Path | None, *, size: int = 80, quality: int = 80) -> str | None:
    """A JPEG (or PNG, for images with transparency) thumbnail of ``path`` as a data URI.

    Parameters
    ----------
    path : Path or None
        The image file; None or an unreadable file gives None.
    size : int, default 80
        Longest side in pixels after resizing (small images are enlarged to it, with
        nearest-neighbour resampling so pixel art such as digits stays sharp).
    quality : int, default 80
        JPEG quality.

    Returns
    -------
    str or None
        The data URI, or None if the file is missing, not an image Pillow can read, or
        above Pillow's decompression-bomb limit (logged as a warning).
    """
    if path is None:
        return None
    from PIL import Image, UnidentifiedImageError

    from failscope.data.datasets import to_rgb

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                if im.mode in ("I", "F") or im.mode.startswith("I;16"):
                    im = to_rgb(im)  # 16-bit greyscale scaled as the models see it
                im = _fit(im, size)
                buf = io.BytesIO()
                if im.mode in ("RGBA", "LA") or "transparency" in im.info:
                    im.convert("RGBA").save(buf, format="PNG", optimize=True)
                    return data_uri(buf.getvalue(), "image/png")
                im.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
                return data_uri(buf.getvalue(), "image/jpeg")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        logger.warning("image %s left out of the report: %s", os.fspath(path), exc)
        return None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        logger.debug("cannot read image %s: %s", os.fspath(path), exc)
        return None


def _fit(im, size: int):
    from PIL import Image

    w, h = im.size
    if w <= 0 or h <= 0:
        raise ValueError("empty image")
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new == (w, h):
        return im
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    if im.mode not in ("RGB", "RGBA", "L", "LA"):
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    return im.resize(new, resample)
