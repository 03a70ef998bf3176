"""Hand tracks across frames: stable ids, a side voted over frames, one hand never twice, smoothed
crop boxes. Pure numpy, no ROS.

Detectors flicker: MediaPipe relabels a hand's side now and then, and after a scene change it can
report one hand twice. A side flip mirrors the crop, and the mesh jumps by decimetres; so tracks
match detections whatever their label (by box overlap and keypoint distance), and a track's side
changes only after `side_switch_frames` consecutive frames that disagree with it. The detection
is relabelled with the track's side *before* cropping. Boxes are One-Euro filtered on the image
stamps: box flicker is the main source of finger flicker.

A track never bridges a gap or a jump: with stamps, a track not seen for `max_gap` seconds ends,
and a detection continues a track only where the hand could have moved in the elapsed time (at
most MAX_HAND_SPEED, its size changing by at most SIZE_CHANGE_PER_S). A hand that reappears after
a pause, or elsewhere, starts a new track with its detector's side and fresh filters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .filter import FilterConfig, OneEuro
from .types import Detection

HAND_SIZE_M = 0.19      # a hand's box diagonal, wrist to fingertips: converts box pixels to metres
BOX_CUTOFF_SCALE = 0.3  # boxes are smoothed harder than the pose (its min cutoff and beta scaled):
                        # the crop's margin (rescale) absorbs the lag
DUPLICATE_IOU = 0.7     # two box-only detections overlapping this much are one hand
MAX_HAND_SPEED = 3.0    # m/s, a fast teleoperation move; a detection farther than this could have gone is another hand
MOTION_SLACK = 0.5      # box diagonals a detection may be off its track's box at no elapsed time (detector jitter)
SIZE_CHANGE_PER_S = 2.0  # a track's box may grow or shrink by 1.5x plus this factor per second


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [N,4] and b [M,4] (x1, y1, x2, y2) -> [N,M]; 0 for empty boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    # per pair: overlap width and height (negative = none), then the areas
    wh = np.maximum(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0.0)
    inter = wh[..., 0] * wh[..., 1]
    sa, sb = np.maximum(a[..., 2:] - a[..., :2], 0.0), np.maximum(b[..., 2:] - b[..., :2], 0.0)
    union = sa[..., 0] * sa[..., 1] + sb[..., 0] * sb[..., 1] - inter
    # Degenerate (zero-area) boxes would divide by zero; they overlap nothing.
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _keypoint_similarity(a: list[np.ndarray | None], b: list[np.ndarray | None], sizes: np.ndarray) -> np.ndarray:
    """[N,M] in [0, 1]: 1 - mean keypoint distance / half of b's box diagonal (0 without keypoints)."""
    if all(k is not None for k in a) and all(k is not None for k in b) and a and b:   # the usual case
        d = np.sqrt(((np.stack(a)[:, None] - np.stack(b)[None]) ** 2).sum(-1)).mean(-1)
        return np.maximum(0.0, 1.0 - d / (0.5 * sizes))
    out = np.zeros((len(a), len(b)))
    ia = [i for i, k in enumerate(a) if k is not None]
    ib = [j for j, k in enumerate(b) if k is not None]
    if ia and ib:
        out[np.ix_(ia, ib)] = _keypoint_similarity([a[i] for i in ia], [b[j] for j in ib], sizes[ib])
    return out


def _diagonal(box: np.ndarray) -> float:
    return float(np.hypot(box[2] - box[0], box[3] - box[1])) or 1.0


def remove_duplicates(detections: list[Detection]) -> list[Detection]:
    """One hand, one detection: of two detections of the same hand (whatever their labels) the
    higher-scoring one stays. The same hand means boxes overlapping by IoU > 0.7 and, where both
    have keypoints, keypoints within 10 % of the box diagonal of each other (two real hands may
    overlap, their joints do not coincide)."""
    if len(detections) < 2:
        return detections
    boxes = np.stack([d.box for d in detections]).astype(np.float64)
    same = iou_matrix(boxes, boxes) > DUPLICATE_IOU
    np.fill_diagonal(same, False)
    if not same.any():                    # the usual case: nothing to compare further
        return detections
    kps = [d.keypoints for d in detections]
    kp_same = _keypoint_similarity(kps, kps, np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])) > 0.8
    has_kp = np.array([k is not None for k in kps])
    same &= kp_same | ~(has_kp[:, None] & has_kp[None, :])
    kept: list[int] = []
    for i in sorted(range(len(detections)), key=lambda i: (-detections[i].score, -detections[i].side_score)):
        if not any(same[i, k] for k in kept):
            kept.append(i)
    return [d for i, d in enumerate(detections) if i in kept]


def plausible_motion(track_boxes: np.ndarray, boxes: np.ndarray, elapsed: np.ndarray) -> np.ndarray:
    """[T,D] bool: could the hand of each track box [T,4], `elapsed` [T] seconds later, be at
    each detection box [D,4]? Its centre may have moved MOTION_SLACK box diagonals plus
    MAX_HAND_SPEED x elapsed (in diagonals: a hand is HAND_SIZE_M long), its size changed by
    1.5x plus SIZE_CHANGE_PER_S per second."""
    t = np.asarray(track_boxes, np.float64).reshape(-1, 1, 4)
    d = np.asarray(boxes, np.float64).reshape(1, -1, 4)
    diag_t = np.hypot(t[..., 2] - t[..., 0], t[..., 3] - t[..., 1]).clip(min=1.0)
    diag_d = np.hypot(d[..., 2] - d[..., 0], d[..., 3] - d[..., 1]).clip(min=1.0)
    moved = np.hypot(*((d[..., :2] + d[..., 2:]) / 2 - (t[..., :2] + t[..., 2:]) / 2).transpose(2, 0, 1))
    dt = np.asarray(elapsed, np.float64).reshape(-1, 1)
    reach = MOTION_SLACK + MAX_HAND_SPEED * dt / HAND_SIZE_M
    growth = 1.5 + SIZE_CHANGE_PER_S * dt
    ratio = np.maximum(diag_d / diag_t, diag_t / diag_d)
    return (moved <= reach * np.maximum(diag_t, diag_d)) & (ratio <= growth)


@dataclass
class _Track:
    track_id: int
    is_right: bool
    raw_box: np.ndarray          # last observed box: what the next frame is matched against
    keypoints: np.ndarray | None
    box_filter: OneEuro
    last_stamp: float | None     # when it was last seen
    disagree: int = 0            # consecutive frames whose label disagrees with is_right
    missed: int = 0


class HandTracker:
    """iou_threshold: the least match score (box IoU, or keypoint similarity) that continues a track.
    max_missed: a track survives this many frames without a match (a brief dropout keeps the id).
    side_switch_frames: consecutive disagreeing labels needed to change a track's side.
    filter_config: the box filter's (its min cutoff scaled by BOX_CUTOFF_SCALE); None: raw boxes.
    max_gap: s, with stamps a track not seen for longer ends, whatever max_missed says."""

    def __init__(self, iou_threshold: float = 0.2, max_missed: int = 5, side_switch_frames: int = 5,
                 filter_config: FilterConfig | None = None, max_gap: float = 0.2) -> None:
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        if side_switch_frames < 1:
            raise ValueError(f"side_switch_frames must be >= 1, got {side_switch_frames}")
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.side_switch_frames = int(side_switch_frames)
        self.filter_config = filter_config
        self.max_gap = float(max_gap)
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.missed_ids: list[int] = []    # tracks alive but not seen in the last update

    def reset(self) -> None:
        """Forget all tracks (e.g. when time jumps back); ids keep counting up."""
        self._tracks = []
        self.missed_ids = []

    @property
    def track_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    def update(self, detections: list[Detection], stamp: float | None = None) -> list[Detection]:
        """Drops duplicates, then sets `track_id`, the track's voted side (`is_right`) and, with a
        stamp and a filter config, the smoothed box (a new array) on each detection. Returns the
        kept detections in their order."""
        detections = remove_duplicates(detections)
        if stamp is not None:      # a pause ends every track it outlasted: nothing bridges it
            self._tracks = [t for t in self._tracks if t.last_stamp is None or stamp - t.last_stamp <= self.max_gap]
        pairs = self._match(detections, stamp)
        matched = set()
        for ti, di in pairs:
            self._continue(self._tracks[ti], detections[di], stamp)
            matched.add(ti)
        survivors, self.missed_ids = [], []
        for ti, t in enumerate(self._tracks):
            if ti not in matched:
                t.missed += 1
                if t.missed > self.max_missed:
                    continue
                self.missed_ids.append(t.track_id)
            survivors.append(t)
        self._tracks = survivors
        taken = {di for _, di in pairs}
        for di, det in enumerate(detections):
            if di not in taken:
                self._start(det, stamp)
        return detections

    def _match(self, dets: list[Detection], stamp: float | None) -> list[tuple[int, int]]:
        tracks = self._tracks
        if not tracks or not dets:
            return []
        boxes = np.stack([d.box for d in dets]).astype(np.float64)
        track_boxes = np.stack([t.raw_box for t in tracks])
        score = iou_matrix(track_boxes, boxes)
        if not (score.max(0) > 0.5).all():   # a fast move or a jump: the keypoints may still match
            diagonals = np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).clip(min=1.0)
            score = np.maximum(score, _keypoint_similarity([t.keypoints for t in tracks], [d.keypoints for d in dets],
                                                           diagonals))
        if stamp is not None:
            elapsed = np.array([0.0 if t.last_stamp is None else max(stamp - t.last_stamp, 0.0) for t in tracks])
            score = np.where(plausible_motion(track_boxes, boxes, elapsed), score, 0.0)
        # the label breaks ties between crossing hands, never a clear overlap
        same_side = np.array([[t.is_right == bool(d.is_right) for d in dets] for t in tracks])
        score = score + 0.05 * (same_side & (score > 0))
        order = np.argsort(-score, axis=None, kind="stable")
        used_t, used_d, pairs = set(), set(), []
        for flat in order:
            ti, di = divmod(int(flat), len(dets))
            if score[ti, di] <= 0.0 or score[ti, di] < self.iou_threshold:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            pairs.append((ti, di))
        return pairs

    def _continue(self, track: _Track, det: Detection, stamp: float | None) -> None:
        if bool(det.is_right) != track.is_right:
            track.disagree += 1
            if track.disagree >= self.side_switch_frames:
                track.is_right, track.disagree = bool(det.is_right), 0
        else:
            track.disagree = 0
        det.is_right = track.is_right
        track.raw_box = np.asarray(det.box, dtype=np.float64).copy()
        track.keypoints = det.keypoints
        track.missed = 0
        track.last_stamp = stamp
        det.track_id = track.track_id
        if stamp is not None and self.filter_config is not None:
            track.box_filter.scale = HAND_SIZE_M / _diagonal(track.raw_box)
            det.box = track.box_filter(track.raw_box.reshape(2, 2), stamp).reshape(4).astype(np.float32)

    def _start(self, det: Detection, stamp: float | None) -> None:
        raw = np.asarray(det.box, dtype=np.float64).copy()
        cfg = self.filter_config or FilterConfig()
        box_filter = OneEuro(FilterConfig(cfg.min_cutoff * BOX_CUTOFF_SCALE, cfg.beta * BOX_CUTOFF_SCALE, cfg.d_cutoff),
                             scale=HAND_SIZE_M / _diagonal(raw))
        if stamp is not None:
            box_filter(raw.reshape(2, 2), stamp)
        self._tracks.append(_Track(self._next_id, bool(det.is_right), raw, det.keypoints, box_filter, stamp))
        det.track_id = self._next_id
        self._next_id += 1
