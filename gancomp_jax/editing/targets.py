"""Target images for projection: reading, checking and resizing as NVlabs' ``run_projection``.

NVlabs opens the file with PIL, converts it to RGB, centre-crops the largest square
(``((w-s)//2, (h-s)//2, (w+s)//2, (h+s)//2)`` with ``s = min(w, h)``) and resizes it to the
generator's resolution with Lanczos. We do the same crop and resize, with one difference: we
do not silently convert. An image whose channels do not match the generator (a grey-scale
image for an RGB generator, an RGBA image whose alpha would be dropped, palette, CMYK or 16-bit
images) is refused with one error naming the file and its mode, so the user decides how to
flatten it. All targets of a batch are checked before any projection starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")
_MODE_FOR_CHANNELS = {3: "RGB", 1: "L"}
_MODE_WORDS = {"L": "a 1-channel (grey-scale, mode L)", "LA": "a grey-scale + alpha (mode LA)",
               "RGBA": "an RGBA", "P": "a palette (mode P)", "CMYK": "a CMYK", "1": "a 1-bit (mode 1)",
               "I;16": "a 16-bit grey-scale (mode I;16)", "I": "a 32-bit integer (mode I)",
               "F": "a floating-point (mode F)", "RGB": "an RGB", "YCbCr": "a YCbCr"}


def open_target(path: str | os.PathLike, img_channels: int = 3) -> Image.Image:
    """Opens and fully decodes ``path``; raises one clear error if it is missing, not an image, or
    its mode does not fit a generator with ``img_channels`` channels."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"target image {path} does not exist")
    if not path.is_file():
        raise ValueError(f"target {path} is not a file")
    try:
        with Image.open(path) as im:
            im.load()
            img = im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"target {path} is not a readable image ({e.__class__.__name__}: {e})") from None
    want = _MODE_FOR_CHANNELS.get(img_channels)
    if want is None:
        raise ValueError(f"projection supports generators with 1 or 3 channels, not {img_channels}")
    if img.mode != want:
        what = _MODE_WORDS.get(img.mode, f"a mode {img.mode}")
        raise ValueError(f"target {path} is {what} image; the generator makes {img_channels}-channel "
                         f"({want}) images. Convert it first (e.g. PIL Image.convert('{want}'), deciding "
                         f"yourself how to treat any alpha channel)")
    if min(img.size) < 1:
        raise ValueError(f"target {path} is empty ({img.size[0]}x{img.size[1]})")
    return img


def crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """NVlabs' centre crop to the largest square, then Lanczos resize to ``resolution``."""
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    return img.resize((resolution, resolution), Image.LANCZOS)


def load_target(path: str | os.PathLike, resolution: int, img_channels: int = 3) -> np.ndarray:
    """uint8 ``[resolution, resolution, img_channels]`` target, prepared as NVlabs prepares it."""
    arr = np.asarray(crop_resize(open_target(path, img_channels), resolution), dtype=np.uint8)
    return arr.reshape(resolution, resolution, img_channels)


def list_targets(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder`` (by suffix, sorted by name); errors if none or
    if two files would give the same output sub-folder name (their stem)."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"targets folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"targets={folder} is not a folder (use config.target for one image)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise ValueError(f"targets folder {folder} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    stems: dict[str, Path] = {}
    for p in files:
        if p.stem in stems:
            raise ValueError(f"targets {stems[p.stem].name} and {p.name} in {folder} would share the "
                             f"output folder {p.stem!r}; rename one")
        stems[p.stem] = p
    return files
