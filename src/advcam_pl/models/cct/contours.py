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
    (bool, framed by background). Points are in ``image``'s coordinates, (x, y).

    Walks flat indices into the image's bytes (OpenCV's ``deltas``): numpy scalar indexing would be
    several times slower, and this loop runs once per border pixel.
    """
    width = image.shape[1]
    pixels = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    deltas = [dx + dy * width for dx, dy in zip(_DX, _DY)] * 2
    i0 = y0 * width + x0
    s = 4  # the pixel west of the start is background
    for _ in range(8):  # clockwise search for the first neighbour
        s = (s - 1) & 7
        if pixels[i0 + deltas[s]]:
            break
    else:
        return [(x0, y0)]  # a lone pixel
    i1, i3 = i0 + deltas[s], i0
    prev_s = s ^ 4
    points = []
    while True:
        s += 1  # counter-clockwise search, starting after the pixel we came from
        while not pixels[i3 + deltas[s]]:
            s += 1
        s &= 7
        if s != prev_s:
            points.append(divmod(i3, width)[::-1])
            prev_s = s
        i4 = i3 + deltas[s]
        if i4 == i0 and i3 == i1:
            return points
        i3 = i4
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
