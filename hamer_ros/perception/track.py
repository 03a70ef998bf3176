"""Stable hand ids across frames, and optional box smoothing. Pure numpy, no ROS.

Matching is greedy by IoU between the previous boxes and the new ones, separately per side: a
real left hand never inherits a right hand's id, even when two hands cross or overlap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import Detection


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [N,4] and b [M,4] (x1, y1, x2, y2) -> [N,M]; 0 for empty boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    # Degenerate (zero-area) boxes would divide by zero; they overlap nothing.
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass
class _Track:
    track_id: int
    is_right: bool
    raw_box: np.ndarray      # last observed box: what the next frame is matched against
    box: np.ndarray          # smoothed box: what is reported
    missed: int = 0


class HandTracker:
    """iou_threshold: the least IoU with a track's last box that continues the track.
    max_missed: a track survives up to this many consecutive frames without a match (a brief
    detector dropout keeps the id); after that the hand gets a new id when it comes back.
    alpha: exponential smoothing weight of the newest box (1 = no smoothing, smaller = smoother
    but laggier)."""

    def __init__(self, iou_threshold: float = 0.2, max_missed: int = 5, alpha: float = 1.0) -> None:
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.alpha = float(alpha)
        self._tracks: list[_Track] = []
        self._next_id = 0

    def reset(self) -> None:
        """Forget all tracks (e.g. after a jump in the stream); ids keep counting up."""
        self._tracks = []

    @property
    def track_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    def update(self, detections: list[Detection]) -> list[Detection]:
        """Sets `track_id` on each detection (in place) and, when alpha < 1, replaces its box with
        the smoothed one (a new array). Returns the same detections, in the same order."""
        matched_tracks: set[int] = set()
        for is_right in (False, True):
            tracks = [t for t in self._tracks if t.is_right == is_right]
            dets = [d for d in detections if bool(d.is_right) == is_right]
            pairs = self._greedy_match(tracks, dets)
            taken = set()
            for ti, di in pairs:
                self._continue(tracks[ti], dets[di])
                matched_tracks.add(id(tracks[ti]))
                taken.add(di)
            for di, det in enumerate(dets):
                if di not in taken:
                    self._start(det)
                    matched_tracks.add(id(self._tracks[-1]))
        survivors = []
        for t in self._tracks:
            if id(t) not in matched_tracks:
                t.missed += 1
                if t.missed > self.max_missed:
                    continue
            survivors.append(t)
        self._tracks = survivors
        return list(detections)

    def _greedy_match(self, tracks: list[_Track], dets: list[Detection]) -> list[tuple[int, int]]:
        if not tracks or not dets:
            return []
        iou = iou_matrix(np.stack([t.raw_box for t in tracks]), np.stack([d.box for d in dets]))
        # Best overlaps first; each track and each detection is used at most once. Zero overlap
        # never matches, even with iou_threshold=0, so far-apart hands do not swap ids.
        order = np.argsort(-iou, axis=None, kind="stable")
        used_t, used_d, pairs = set(), set(), []
        for flat in order:
            ti, di = divmod(int(flat), len(dets))
            if iou[ti, di] <= 0.0 or iou[ti, di] < self.iou_threshold:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            pairs.append((ti, di))
        return pairs

    def _continue(self, track: _Track, det: Detection) -> None:
        raw = np.asarray(det.box, dtype=np.float64)
        track.raw_box = raw.copy()
        track.box = self.alpha * raw + (1.0 - self.alpha) * track.box
        track.missed = 0
        det.track_id = track.track_id
        if self.alpha < 1.0:
            det.box = track.box.astype(np.asarray(det.box).dtype, copy=True)

    def _start(self, det: Detection) -> None:
        raw = np.asarray(det.box, dtype=np.float64).copy()
        self._tracks.append(_Track(self._next_id, bool(det.is_right), raw, raw.copy()))
        det.track_id = self._next_id
        self._next_id += 1
