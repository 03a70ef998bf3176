"""MediaPipe's hand models on the project's runtime as a HandDetector: boxes, real sides, 2D
keypoints, metric landmarks and relative depths from one frame, without the mediapipe package.

Streams (video_mode): tracking by regression. A hand's region in the next frame comes from its
keypoints in this one (MediaPipe's rule, `landmarks_rect`): the landmark model's, or HaMeR's where
the pipeline ran it and passed them back (`follow`: HaMeR sees a hand through an occluder that
the landmark model's region would drift off); the palm detector runs only
while fewer than max_hands hands are tracked, to find new ones: at once when no hand is held or one
was just lost, else every SEARCH_EVERY frames. A hand the palm detector would
miss (holding something, gloved, half hidden) stays tracked while the landmark model still finds a
hand in its region (presence >= min_tracking_confidence).

Stills (video_mode off): MediaPipe's static graph misses most hands that are large, small or far
from upright in a 192-pixel view of the whole frame, so the palm detector also looks at
overlapping tiles and at the frame shrunk on a larger canvas (`proposals`). Every
palm's region goes to the landmark model on the full-resolution frame; hands found twice are
merged by keypoint distance, not box overlap (interlaced hands overlap by box IoU ~0.5 and are
still two hands).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..types import Detection
from .hands import associate
from .landmarks import HandLandmarker, HandLandmarks
from .palm import PalmDetector
from .roi import HandRegion, NormRect, landmarks_rect, rect_iou
from .runtime import check_rgb

# A palm region from another view that overlaps one already kept by more than this is the same
# palm (looser than MediaPipe's 0.5 within one view: two hands' regions can overlap that much).
SAME_REGION_IOU = 0.7
# Two results are one hand when their keypoints lie this close, as a fraction of the hand's size.
SAME_HAND_DISTANCE = 0.25
# Streams: while some hands are held, the palm detector looks for more every this many frames.
SEARCH_EVERY = 3
# A still's extra views take palms down to this score (the landmark model's presence still decides).
PROPOSAL_MIN_SCORE = 0.3
# The extra views of a still: tiles of this fraction of the long side, at this many positions per
# axis; the canvas the frame is shrunk onto, relative to the frame.
GRID_TILE = 0.5
GRID_STEPS = 3
CANVAS_SCALE = 1.5


class KeypointHandDetector:
    """A HandDetector (see detect.py) with MediaPipe Hands' thresholds: a palm counts from
    min_detection_confidence, a hand (new or tracked) from a landmark presence of
    min_tracking_confidence. score: that presence; side_score: the handedness confidence. Not
    thread-safe: one instance per thread."""

    def __init__(self, max_hands: int = 2, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, video_mode: bool = True, proposals: bool = False,
                 device: str = "cpu") -> None:
        """proposals: also look at tiles and a shrunk canvas (for stills: `hamer-ros infer` on photos)."""
        self.max_hands = int(max_hands)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_tracking_confidence = float(min_tracking_confidence)
        self.video_mode = bool(video_mode)
        self.proposals = bool(proposals)
        floor = min(self.min_detection_confidence, PROPOSAL_MIN_SCORE) if self.proposals else None
        self._palms: PalmDetector | None = PalmDetector(device, min_score=floor or self.min_detection_confidence)
        self._landmarks = HandLandmarker(device)
        self._tracked: list[NormRect] = []
        self._held: list[np.ndarray] = []   # the tracked hands' keypoints (px), as _tracked
        self._frame_size = (0, 0)
        self._since_search = 0      # frames since the palm detector last looked (streams)

    def __call__(self, image_rgb: np.ndarray) -> list[Detection]:
        if self._palms is None:
            raise RuntimeError("KeypointHandDetector is closed")
        img = check_rgb(image_rgb)
        hands = self._track(img) if self.video_mode else []
        self._since_search += 1
        if len(hands) < self.max_hands and self._search_now(len(hands)):
            taken = [h.region.to_norm(img.shape[1], img.shape[0]) for h in hands]
            hands += self._find(img, taken, self.max_hands - len(hands))
            self._since_search = 0
        if self.video_mode:
            self._tracked = [h.next_rect for h in hands]
            self._held = [h.keypoints for h in hands]
            self._frame_size = (img.shape[1], img.shape[0])
        return [h.to_detection() for h in hands]

    def follow(self, keypoints: Sequence[np.ndarray]) -> None:
        """Streams: another estimate of this frame's hands (21 keypoints each, px, MediaPipe /
        OpenPose order: HaMeR's). Each held hand whose keypoints these are (by keypoint
        distance) is looked for next where they put it; the rest keep the landmark model's region."""
        w, h = self._frame_size
        for i, held in enumerate(self._held):
            near = [(_hand_distance(k, held), k) for k in keypoints
                    if np.shape(k) == (21, 2) and np.isfinite(k).all()]
            near = [(d, k) for d, k in near if d < SAME_HAND_DISTANCE]
            if near:
                best = min(near, key=lambda dk: dk[0])[1]
                self._tracked[i] = landmarks_rect((np.asarray(best, np.float64) + 0.5) / (w, h), w, h)

    def _search_now(self, held: int) -> bool:
        """Stills: always. Streams: while no hand is held, as soon as a track is lost, and else
        every SEARCH_EVERY frames (a hand entering waits at most that long; the palm detector
        costs about as much as tracking a hand)."""
        return (not self.video_mode or held == 0 or held < len(self._tracked)
                or self._since_search >= SEARCH_EVERY)

    def _track(self, img: np.ndarray) -> list[HandLandmarks]:
        if not self._tracked:
            return []
        found = [h for h in self._landmarks(img, self._tracked) if h.presence >= self.min_tracking_confidence]
        return _distinct(found)[: self.max_hands]

    def _find(self, img: np.ndarray, taken: list[NormRect], wanted: int) -> list[HandLandmarks]:
        """New hands: palms, their regions minus those of hands already held, landmarks. A still's
        extra views only add hands the frame's own view does not find, so a hand found there is
        exactly MediaPipe's (and the same at any image scale)."""
        frame, extra = self._palm_rects(img)
        hands: list[HandLandmarks] = []
        for rects in (frame, extra):
            rects = [r for r in rects if all(rect_iou(r, t) <= 0.5 for t in taken)]
            found = [h for h in self._landmarks(img, rects) if h.presence >= self.min_tracking_confidence] if rects else []
            hands += [h for h in _distinct(found) if all(not _same_hand(h, k) for k in hands)]
        return hands[:wanted]

    def _palm_rects(self, img: np.ndarray) -> tuple[list[NormRect], list[NormRect]]:
        """The palm regions of the frame's own view (MediaPipe's graph), and of the extra views."""
        h, w = img.shape[:2]
        palms = self._palms(img)
        frame = associate([p.rect for p in palms if p.score >= self.min_detection_confidence][: self.max_hands])
        if not self.proposals:
            return frame, []
        extra = [r for r in (p.rect for p in palms[: self.max_hands]) if r not in frame]
        for view, dx, dy in _grid(img, GRID_TILE, GRID_STEPS) + [_canvas(img, CANVAS_SCALE)]:
            # the view's regions in the frame's pixels: a shift, as views are crops or paddings
            extra += [HandRegion((p.region.center[0] + dx, p.region.center[1] + dy), p.region.size,
                                 p.region.rotation).to_norm(w, h)
                      for p in self._palms(np.ascontiguousarray(view))[: self.max_hands]]
        kept: list[NormRect] = []
        for r in extra:
            if all(rect_iou(r, k) <= SAME_REGION_IOU for k in frame + kept):
                kept.append(r)
        return frame, kept

    def reset(self) -> None:
        self._tracked, self._held = [], []
        self._since_search = 0

    def close(self) -> None:
        self.reset()
        self._palms = None


def _distinct(hands: list[HandLandmarks]) -> list[HandLandmarks]:
    """The most confident first; a hand whose keypoints lie on a kept one's is the same hand."""
    kept: list[HandLandmarks] = []
    for h in sorted(hands, key=lambda h: -h.presence):
        if all(not _same_hand(h, k) for k in kept):
            kept.append(h)
    return kept


def _same_hand(a: HandLandmarks, b: HandLandmarks) -> bool:
    return _hand_distance(a.keypoints, b.keypoints) < SAME_HAND_DISTANCE


def _hand_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The mean distance of two hands' keypoints (21, 2), as a fraction of b's size."""
    size = max(float(np.ptp(b, axis=0).max()), 1.0)
    return float(np.linalg.norm(np.asarray(a) - b, axis=1).mean()) / size


def _grid(img: np.ndarray, fraction: float, steps: int) -> list[tuple[np.ndarray, int, int]]:
    """Square tiles `fraction` of the long side (at most the short side), `steps` positions along
    each axis from edge to edge (overlapping), with their offsets."""
    h, w = img.shape[:2]
    t = min(int(round(fraction * max(h, w))), h, w)
    xs = sorted({round(i * (w - t) / max(1, steps - 1)) for i in range(steps)})
    ys = sorted({round(i * (h - t) / max(1, steps - 1)) for i in range(steps)})
    return [(img[y:y + t, x:x + t], x, y) for y in ys for x in xs]


def _canvas(img: np.ndarray, scale: float) -> tuple[np.ndarray, int, int]:
    """The frame in the middle of a black canvas `scale` times its size: its hands look smaller
    (the palm detector misses hands that fill much of its view)."""
    h, w = img.shape[:2]
    ch, cw = int(round(h * scale)), int(round(w * scale))
    oy, ox = (ch - h) // 2, (cw - w) // 2
    canvas = np.zeros((ch, cw, 3), np.uint8)
    canvas[oy:oy + h, ox:ox + w] = img
    return canvas, -ox, -oy
