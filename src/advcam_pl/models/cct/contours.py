"""Outer contours of a binary mask as ``cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE)`` gives them.

CCT's guided cutout (``models/decoders.py:161-201``) keeps only the contours with more than 50
points *after* OpenCV's ``CHAIN_APPROX_SIMPLE`` compression, so which objects get cut depends on
how OpenCV traces and compresses a border. OpenCV is no dependency of this project; this module
replays its border following (Suzuki & Abe 1985, as in OpenCV's ``icvFetchContour``) in numpy:

- foreground is 8-connected, the image is framed by one row/column of background;
- ``RETR_EXTERNAL``: one contour per outermost blob (blobs inside another blob's holes are part of
  it: holes are filled first, with 4-connected background, which leaves the outer border as it was);
- the trace starts at the blob's first pixel in raster order and keeps a point wherever the chain
  code changes (``CHAIN_APPROX_SIMPLE``): a rectangle has 4 points, a disk of radius 20 has 68.

The point counts and bounding boxes agree with OpenCV's on random masks (checked in the tests when
``cv2`` is importable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# OpenCV's chain codes: 0 = east, then counter-clockwise on screen (y grows downwards).
_DX = (1, 1, 0, -1, -1, -1, 0, 1)
_DY = (0, -1, -1, -1, 0, 1, 1, 1)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Contour:
    """One outer border: ``points`` ``[N, 2]`` (x, y) pixel coordinates, compressed as
    ``CHAIN_APPROX_SIMPLE`` compresses them."""

    points: np.ndarray

    def __len__(self) -> int:
        return len(self.points)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """``(x_min, y_min, x_max, y_max)``, inclusive."""
        x, y = self.points[:, 0], self.points[:, 1]
        return int(x.min()), int(y.min()), int(x.max()), int(y.max())


def _trace(image: np.ndarray, y0: int, x0: int) -> list[tuple[int, int]]:
    """Compressed outer border of the blob whose first raster pixel is ``(y0, x0)`` in ``image``
    (bool, framed by background). Points are in ``image``'s coordinates, (x, y)."""
    s = 4  # the pixel west of the start is background
    for _ in range(8):  # clockwise search for the first neighbour
        s = (s - 1) & 7
        if image[y0 + _DY[s], x0 + _DX[s]]:
            break
    else:
        return [(x0, y0)]  # a lone pixel
    y1, x1 = y0 + _DY[s], x0 + _DX[s]
    y3, x3 = y0, x0
    prev_s = s ^ 4
    points = []
    while True:
        for _ in range(8):  # counter-clockwise search, starting after the pixel we came from
            s += 1
            if image[y3 + _DY[s & 7], x3 + _DX[s & 7]]:
                break
        s &= 7
        if s != prev_s:
            points.append((x3, y3))
            prev_s = s
        y4, x4 = y3 + _DY[s], x3 + _DX[s]
        if (y4, x4) == (y0, x0) and (y3, x3) == (y1, x1):
            return points
        y3, x3 = y4, x4
        s = (s + 4) & 7


def external_contours(mask: np.ndarray) -> list[Contour]:
    """Outer contours of the non-zero pixels of ``mask`` ``[H, W]``, in raster order of their
    first pixel (OpenCV returns the same set, in reverse order)."""
    framed = np.pad(np.asarray(mask) != 0, 1)
    filled = ndimage.binary_fill_holes(framed)
    labels, _ = ndimage.label(filled, structure=_EIGHT_CONNECTED)
    contours = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        y0 = box[0].start
        x0 = box[1].start + int(np.argmax(labels[y0, box[1]] == index))
        points = np.asarray(_trace(filled, y0, x0), dtype=np.int64) - 1  # drop the frame
        contours.append(Contour(points))
    return contours
