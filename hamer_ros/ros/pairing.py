"""Pairing each image with the result computed from it, by exact stamp and frame id, for the
visualisation node. ROS-free: items are opaque.

The perception node takes the newest frame whenever it is free, so which images will get a
result is not known in advance: images wait (up to `window_ns` behind the newest, and at most
`max_images`), results that overtake their image wait for it (a few), and a result whose image
has already been let go is counted, so the node can say why no overlay came.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

I = TypeVar("I")   # noqa: E741 -- the image
R = TypeVar("R")   # the result

Key = tuple[int, str]   # (stamp in ns, frame_id)


class StampPairer(Generic[I, R]):
    """add_image / add_result return (image, result) once both of one key are in, else None."""

    def __init__(self, window_ns: int, max_images: int = 100, max_results: int = 10) -> None:
        self.window_ns = window_ns
        self.max_images = max_images
        self.max_results = max_results
        self._images: OrderedDict[Key, I] = OrderedDict()
        self._results: OrderedDict[Key, R] = OrderedDict()
        self._newest = -1
        self.paired = 0
        self.image_gone = 0     # results whose image was already let go (or never came)
        self.restarts = 0       # stamps jumped back: everything waiting was dropped

    def add_image(self, stamp_ns: int, frame_id: str, image: I) -> tuple[I, R] | None:
        self._advance(stamp_ns)
        key = (stamp_ns, frame_id)
        result = self._results.pop(key, None)
        if result is not None:
            self.paired += 1
            return image, result
        self._images[key] = image
        self._images.move_to_end(key)
        self._trim()
        return None

    def add_result(self, stamp_ns: int, frame_id: str, result: R) -> tuple[I, R] | None:
        key = (stamp_ns, frame_id)
        image = self._images.pop(key, None)
        if image is not None:
            self.paired += 1
            return image, result
        if self._images and stamp_ns < next(iter(self._images))[0]:
            self.image_gone += 1      # older than every waiting image: its own is gone
            return None
        self._results[key] = result
        while len(self._results) > self.max_results:
            self._results.popitem(last=False)
            self.image_gone += 1
        return None

    def _advance(self, stamp_ns: int) -> None:
        if stamp_ns < self._newest - self.window_ns:
            # a looping bag or a restarted driver: what waits belongs to another time line
            self._images.clear()
            self._results.clear()
            self.restarts += 1
            self._newest = stamp_ns
        self._newest = max(self._newest, stamp_ns)

    def _trim(self) -> None:
        oldest_kept = self._newest - self.window_ns
        while self._images and (len(self._images) > self.max_images
                                or next(iter(self._images))[0] < oldest_kept):
            self._images.popitem(last=False)
        while self._results and next(iter(self._results))[0] < oldest_kept:
            self._results.popitem(last=False)
            self.image_gone += 1

    def __len__(self) -> int:
        return len(self._images)
