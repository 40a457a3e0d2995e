"""Built-in toy dataset: scikit-learn's bundled 8x8 handwritten digits.

Needs no download (the 1797 images ship inside scikit-learn), so it is the
default dataset for smoke tests and CI.

Each 8x8 image (intensities 0..16) is rescaled to 0..255 and upsampled in
float precision to ``resolution x resolution`` with PIL's bicubic filter, then
clipped and rounded to uint8. To make the three colour channels carry some
signal, the grey image is multiplied by a fixed per-class colour (``tint=True``,
the default): ``rgb = round(grey * PALETTE[label] / 255)``. With ``tint=False``
the grey image is replicated into all three channels. Everything is
deterministic; images are generated on access, so memory use does not grow
with the resolution.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# One colour per digit class (RGB, uint8), each with a saturated channel so
# that the brightest stroke pixels stay close to full intensity.
PALETTE = np.array(
    [
        [255, 255, 255],  # 0 white
        [255, 80, 80],  # 1 red
        [80, 255, 80],  # 2 green
        [90, 140, 255],  # 3 blue
        [255, 230, 60],  # 4 yellow
        [255, 80, 255],  # 5 magenta
        [60, 255, 255],  # 6 cyan
        [255, 160, 40],  # 7 orange
        [180, 110, 255],  # 8 violet
        [160, 255, 170],  # 9 mint
    ],
    dtype=np.float32,
)


class DigitsSource:
    """Random-access source over the 1797 scikit-learn digits.

    Elements are dicts ``{'image': uint8 [resolution, resolution, 3] in 0..255,
    'label': int in 0..9}`` (the digit class).

    Attributes:
      resolution: Side length of the generated square images.
      num_skipped: Always 0 (the data are generated, nothing can be unreadable).
      num_classes: 10.
    """

    num_skipped = 0
    num_classes = 10

    def __init__(self, resolution: int = 32, *, tint: bool = True):
        if int(resolution) < 8:
            raise ValueError(f"digits resolution must be >= 8 (the native size), got {resolution}")
        from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

        digits = load_digits()
        # (N, 8, 8) float32 in 0..255.
        self._small = (digits.images * (255.0 / 16.0)).astype(np.float32)
        self._labels = digits.target.astype(np.int64)
        self.resolution = int(resolution)
        self.tint = bool(tint)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, object]:
        index = int(index)
        label = int(self._labels[index])
        small = Image.fromarray(self._small[index])  # mode 'F' (float32)
        big = small.resize((self.resolution, self.resolution), Image.BICUBIC)
        grey = np.clip(np.asarray(big, dtype=np.float32), 0.0, 255.0)
        if self.tint:
            rgb = grey[:, :, None] * (PALETTE[label] / 255.0)
        else:
            rgb = np.repeat(grey[:, :, None], 3, axis=2)
        image = np.rint(rgb).astype(np.uint8)
        return {"image": image, "label": label}

    def __repr__(self) -> str:
        return f"DigitsSource(resolution={self.resolution}, tint={self.tint}, len={len(self)})"
