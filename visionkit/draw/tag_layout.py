"""Where label tags go: the first free spot of each tag's list of candidates, else the least covered one.

The cost of a spot is the sum of its overlap areas with the tags laid out so far. Summing over every
earlier tag made the layout quadratic (3,000 boxes took 44 s). Instead a per-pixel count of the tags
covering each pixel is kept: the cost of a spot is the sum of that count over the spot's rectangle, which
equals the old pairwise sum exactly, and placing a tag adds 1 over its rectangle. Each tag costs work in
proportion to its own area (bounded: drawn labels are cut to a maximum length), whatever the number of
tags. The count lives only inside the image; it takes 2 bytes per pixel (4 past 65,534 tags), allocated
lazily by the OS as tags touch it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TagLayout"]


class TagLayout:
    """Tags of ``(w, h)`` laid out one at a time in a ``width x height`` image."""

    def __init__(self, width: int, height: int, n: int):
        self._cover = np.zeros((height, width), np.uint16 if n < 65535 else np.uint32)
        self._wh = (width, height)

    def _window(self, x: int, y: int, w: int, h: int) -> tuple[slice, slice]:
        width, height = self._wh
        return slice(max(y, 0), min(y + h, height)), slice(max(x, 0), min(x + w, width))

    def cost(self, x: int, y: int, w: int, h: int) -> int:
        """Sum of the overlap areas of the ``w x h`` rectangle at ``(x, y)`` with the tags placed so far."""
        return int(self._cover[self._window(x, y, w, h)].sum())

    def place(self, spots: list[tuple[int, int]], w: int, h: int) -> tuple[int, int]:
        """Take the first spot that overlaps no placed tag, else the least-overlapping (first on a tie)."""
        best, best_cost = spots[0], None
        for x, y in spots:
            cost = self.cost(x, y, w, h)
            if cost == 0:
                best = (x, y)
                break
            if best_cost is None or cost < best_cost:
                best, best_cost = (x, y), cost
        self._cover[self._window(best[0], best[1], w, h)] += 1
        return best
