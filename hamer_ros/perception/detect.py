"""Hand detectors: an RGB frame in, hand boxes with their real anatomical side out.

Every detector follows `HandDetector`; the pipeline only needs boxes and sides (the HaMeR crop does
the padding), keypoints and metric joints are extras that some detectors provide.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .types import Detection

_MEDIAPIPE_HINT = 'pip install "hamer_ros[mediapipe]"  (or: pip install mediapipe==0.10.21)'


@runtime_checkable
class HandDetector(Protocol):
    """image_rgb: uint8 HxWx3 RGB. Returns the hands of that one frame (any order)."""

    def __call__(self, image_rgb: np.ndarray) -> list[Detection]: ...

    def reset(self) -> None:
        """Forget what earlier frames taught the detector (its own tracking), e.g. when time jumps back."""

    def close(self) -> None: ...


def normalised_to_pixels(norm_xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe's normalised image coordinates -> pixels as OpenCV and K count them.

    MediaPipe puts the image's outer edges at 0 and 1 (the first pixel's centre is 0.5 / W);
    OpenCV, K and every pixel in this package put pixel centres at integers (the first pixel's
    centre is 0). So u = x W - 0.5, v = y H - 0.5."""
    return (np.asarray(norm_xy, dtype=np.float32) * np.array([width, height], dtype=np.float32)
            - np.float32(0.5))


def _check_rgb(image_rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape HxWx3, got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {img.dtype}")
    return img


class MediaPipeHandDetector:
    """MediaPipe Hands (legacy solution API, models bundled in the 0.10.21 wheel; CPU).

    Not thread-safe (one MediaPipe graph per instance): use one instance per thread.
    In video mode the landmarks of one frame seed the next frame's search, and the palm detector
    runs only while fewer than `max_hands` hands are tracked (so set max_hands to the number of
    hands really expected: a spare slot costs a palm detection every frame). Feed the frames of
    one stream in order. For unrelated images use video_mode=False, otherwise a hand from the
    previous image can leak into the next result.
    """

    def __init__(
        self,
        max_hands: int = 2,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        model_complexity: int = 1,
        video_mode: bool = True,
    ) -> None:
        # Lazy import: mediapipe is an optional ~1 GB dependency; the fixed-ROI detector and the
        # rest of the package must work without it.
        try:
            import mediapipe as mp
            hands_solution = mp.solutions.hands
        except (ImportError, AttributeError) as e:
            raise ImportError(
                f"MediaPipeHandDetector needs mediapipe's legacy 'solutions.hands' API with its "
                f"bundled models: {_MEDIAPIPE_HINT}"
            ) from e
        try:
            self._hands = hands_solution.Hands(
                static_image_mode=not video_mode,
                max_num_hands=int(max_hands),
                model_complexity=int(model_complexity),
                min_detection_confidence=float(min_detection_confidence),
                min_tracking_confidence=float(min_tracking_confidence),
            )
        except (RuntimeError, FileNotFoundError) as e:
            # Later mediapipe wheels no longer ship the .tflite files, and nothing can be
            # downloaded at run time in our deployments.
            raise RuntimeError(f"could not start MediaPipe Hands ({e}); {_MEDIAPIPE_HINT}") from e
        self.video_mode = bool(video_mode)
        self.min_detection_confidence = float(min_detection_confidence)

    def __call__(self, image_rgb: np.ndarray) -> list[Detection]:
        if self._hands is None:
            raise RuntimeError("MediaPipeHandDetector is closed")
        img = _check_rgb(image_rgb)
        # MediaPipe wraps the buffer in an ImageFrame, which wants C-contiguous data (a flipped
        # view or a ROI slice is not); copy only then. Read-only input is fine: it never writes.
        if not img.flags.c_contiguous:
            img = np.ascontiguousarray(img)
        h, w = img.shape[:2]
        res = self._hands.process(img)
        if not res.multi_hand_landmarks:
            return []
        worlds = res.multi_hand_world_landmarks or [None] * len(res.multi_hand_landmarks)
        out = []
        for lms, world, handedness in zip(res.multi_hand_landmarks, worlds, res.multi_handedness):
            # MediaPipe's 21 landmarks are WRIST, THUMB_CMC/MCP/IP/TIP, INDEX_FINGER_MCP/PIP/DIP/TIP,
            # MIDDLE_..., RING_..., PINKY_... (mp.solutions.hands.HandLandmark 0..20): the same
            # order as OpenPose / COCO-WholeBody hands and HaMeR's output, so no re-indexing.
            norm = np.array([(p.x, p.y, p.z) for p in lms.landmark], dtype=np.float32)
            kp = normalised_to_pixels(norm[:, :2], w, h)
            # Tight box, as the reference demo uses from ViTPose keypoints; the crop's rescale=2
            # supplies the context margin. Landmarks may lie outside the image: not clipped.
            box = np.concatenate([kp.min(axis=0), kp.max(axis=0)]).astype(np.float32)
            joints = None
            if world is not None:
                # World landmarks: metres, origin near the hand's geometric centre, axes x right,
                # y down (the image's), z away from the camera (same sign as the normalised
                # landmark z, "smaller = closer to the camera"); i.e. the camera's optical axes
                # (REP-103), up to the in-plane alignment MediaPipe does (it ignores the small
                # perspective rotation of an off-centre hand). Checked on test1.jpg: world x/y
                # correlate with image x/y at r > 0.99, z with the normalised z.
                joints = np.array([(p.x, p.y, p.z) for p in world.landmark], dtype=np.float32)
            label = handedness.classification[0]
            # MediaPipe labels hands as if the image were a mirrored selfie view (its docs: "swap
            # the handedness output" for non-mirrored input). Camera images are not mirrored,
            # so "Left" is a real right hand (test1.jpg: the OK sign, a right hand, reads "Left").
            out.append(Detection(
                box=box,
                is_right=label.label == "Left",
                # Its solution API reports no per-hand detection confidence: every hand it returns
                # passed min_detection_confidence, the most that can be said of it.
                score=self.min_detection_confidence,
                side_score=float(label.score),
                keypoints=kp,
                world_joints=joints,
                keypoint_depth=norm[:, 2] * np.float32(w),
            ))
        return out

    def reset(self) -> None:
        if self._hands is not None:
            self._hands.reset()       # a new graph run: no landmarks carried over from the last frame

    def close(self) -> None:
        if self._hands is not None:
            self._hands.close()
            self._hands = None

    def __enter__(self) -> MediaPipeHandDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_side(side: Any) -> bool:
    if isinstance(side, (bool, np.bool_)):
        return bool(side)
    s = str(side).strip().lower()
    if s in ("right", "r"):
        return True
    if s in ("left", "l"):
        return False
    raise ValueError(f"hand side must be 'left' or 'right', got {side!r}")


def _parse_roi(i: int, roi: Any) -> tuple[np.ndarray, bool]:
    if isinstance(roi, Mapping):
        if "box" not in roi:
            raise ValueError(f"roi {i}: a dict roi needs 'box' and 'side', got keys {sorted(roi)}")
        if "side" in roi:
            is_right = _parse_side(roi["side"])
        elif "is_right" in roi:
            is_right = _parse_side(bool(roi["is_right"]))
        else:
            raise ValueError(f"roi {i}: missing 'side' ('left' or 'right')")
        raw_box = roi["box"]
    else:
        try:
            raw_box, side = roi
        except (TypeError, ValueError):
            raise ValueError(f"roi {i}: expected (box_xyxy, is_right) or {{box, side}}, got {roi!r}") from None
        is_right = _parse_side(side)
    try:
        box = np.asarray(raw_box, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"roi {i}: box must be 4 numbers x1, y1, x2, y2, got {raw_box!r}") from None
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"roi {i}: box must be 4 finite numbers x1, y1, x2, y2, got {raw_box!r}")
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise ValueError(
            f"roi {i}: box {box.tolist()} has non-positive width or height "
            f"(need x2 > x1 and y2 > y1, pixels, x1,y1 = top-left)"
        )
    return box, is_right


class FixedRoiDetector:
    """Configured boxes, returned every frame: for a fixed camera over a known workspace, or for
    running without any detector. Boxes may extend past the image; the crop pads them."""

    def __init__(self, rois: Iterable[Sequence[Any] | Mapping[str, Any]]) -> None:
        self.rois = [_parse_roi(i, r) for i, r in enumerate(rois)]

    def __call__(self, image_rgb: np.ndarray | None = None) -> list[Detection]:
        # Fresh arrays each frame, so a consumer that edits a box cannot change the configuration.
        return [Detection(box=box.copy(), is_right=is_right, score=1.0) for box, is_right in self.rois]

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


DETECTORS = {"mediapipe": MediaPipeHandDetector, "fixed": FixedRoiDetector}


def make_detector(name: str, **kwargs: Any) -> HandDetector:
    """name: "mediapipe" (kwargs as MediaPipeHandDetector) or "fixed" (kwargs: rois=...)."""
    key = str(name).strip().lower()
    if key not in DETECTORS:
        raise ValueError(f"unknown hand detector {name!r}; choose one of {sorted(DETECTORS)}")
    return DETECTORS[key](**kwargs)
