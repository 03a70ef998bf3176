"""Hand detectors: an RGB frame in, hand boxes with their real anatomical side out.

Every detector follows `HandDetector`; the pipeline only needs boxes and sides (the HaMeR crop does
the padding), keypoints and metric joints are extras that some detectors provide (MediaPipe's
models, hand_models/).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .types import Detection


@runtime_checkable
class HandDetector(Protocol):
    """image_rgb: uint8 HxWx3 RGB. Returns the hands of that one frame (any order). A detector
    that tracks may also have `follow(keypoints)`: the pipeline then passes it where HaMeR saw
    the frame's hands (a list of (21, 2) px keypoints), to look for them there next."""

    def __call__(self, image_rgb: np.ndarray) -> list[Detection]: ...

    def reset(self) -> None:
        """Forget what earlier frames taught the detector (its own tracking), e.g. when time jumps back."""

    def close(self) -> None: ...


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


def _keypoint_detector(**kwargs: Any) -> HandDetector:
    # Imported on use: it loads torch models, which the fixed detector does not need.
    from .hand_models.detector import KeypointHandDetector
    return KeypointHandDetector(**kwargs)


def _wholebody_detector(**kwargs: Any) -> HandDetector:
    from .wholebody import WholeBodyHandDetector
    return WholeBodyHandDetector(**kwargs)


# "mediapipe": MediaPipe's hand models (palm detector + landmarks) on this package's own runtime
# (hand_models/, PyTorch); the mediapipe package itself is not needed. "wholebody": hands from a
# person detector and whole-body keypoints (ONNX models the user gives; wholebody.py).
DETECTORS = {"mediapipe": _keypoint_detector, "wholebody": _wholebody_detector, "fixed": FixedRoiDetector}


def make_detector(name: str, **kwargs: Any) -> HandDetector:
    """name: "mediapipe" (kwargs as hand_models.detector.KeypointHandDetector), "wholebody" (as
    wholebody.WholeBodyHandDetector) or "fixed" (kwargs: rois=...)."""
    key = str(name).strip().lower()
    if key not in DETECTORS:
        raise ValueError(f"unknown hand detector {name!r}; choose one of {sorted(DETECTORS)}")
    return DETECTORS[key](**kwargs)
