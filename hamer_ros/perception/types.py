"""Plain data passed between the perception stages. numpy only, so every stage is testable alone."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .hand_frame import local_joints


@dataclass
class Detection:
    """One hand found by a detector, in full-image pixels of the frame it was found in."""

    box: np.ndarray                     # (4,) float, x1, y1, x2, y2 (px)
    is_right: bool                      # real anatomical side in a normal (non-mirrored) camera image
    score: float                        # detection confidence, 0..1 (that it is a hand)
    side_score: float = 1.0             # confidence in is_right, 0..1 (given sides: 1)
    keypoints: np.ndarray | None = None  # (21, 2) px, OpenPose hand order, when the detector has them
    world_joints: np.ndarray | None = None  # (21, 3) m, metric joints up to translation (camera axes)
    keypoint_depth: np.ndarray | None = None  # (21,) px, depth relative to the wrist in image-pixel units
    track_id: int = -1


@dataclass
class Hand:
    """One reconstructed hand. All 3D quantities are in the camera's optical frame (REP-103:
    x right, y down, z forward), metres; a left hand is a real left hand in every field."""

    is_right: bool
    score: float
    box: np.ndarray                      # (4,) px
    joints: np.ndarray                   # (21, 3) m, OpenPose hand order
    keypoints_2d: np.ndarray             # (21, 2) px, the hand's 2D keypoints in the image
    wrist_position: np.ndarray           # (3,) m  (== joints[0])
    wrist_orientation: np.ndarray        # (3, 3) hand frame -> camera frame (see hand_frame.hand_frame)
    reprojection_error: float            # px, RMS of projected joints vs keypoints_2d
    vertices: np.ndarray | None = None   # (778, 3) m, None in the joints-only (no HaMeR) mode
    faces: np.ndarray | None = None      # (1538, 3) int, winding already correct for this side
    global_orient: np.ndarray | None = None  # (3, 3) MANO root rotation (same side convention)
    hand_pose: np.ndarray | None = None      # (15, 3, 3) MANO joint rotations, relative to parent
    betas: np.ndarray | None = None          # (10,) MANO shape
    track_id: int = -1
    held: bool = False                       # not seen in this frame: the track's last hand, repeated
    # how its distance along the rays was fixed: "rgb" from the image alone; "rgbd" scaled onto this
    # frame's aligned depth; "rgbd-held" no usable depth now, scaled by its track's measured size
    placement: str = "rgb"
    depth_residual: float = float("nan")     # m, robust spread of depth - hand surface ("rgbd" only)
    scale: float = 1.0                       # its size relative to the network's hand (1.0: from RGB alone)
    side_score: float = 1.0                  # confidence in is_right (the detector's handedness score)

    def is_finite(self) -> bool:
        """No NaN or infinity in anything a consumer reads (one would poison a filter, a TF tree,
        a robot's controller)."""
        arrays = [self.joints, self.keypoints_2d, self.wrist_position, self.wrist_orientation, self.box,
                  self.vertices, self.global_orient, self.hand_pose, self.betas]
        return (all(a is None or bool(np.all(np.isfinite(a))) for a in arrays)
                and bool(np.isfinite(self.score) and np.isfinite(self.scale) and np.isfinite(self.side_score)))

    @property
    def side(self) -> str:
        return "right" if self.is_right else "left"

    @property
    def joints_local(self) -> np.ndarray:
        """(21, 3) m: the joints relative to the wrist in the hand frame, what a retargeter takes."""
        return local_joints(self.joints, self.wrist_orientation)


@dataclass
class StageTimes:
    """Per-stage wall time of one frame, milliseconds. On a GPU the stages are queued and the frame
    synchronises once, when the results are downloaded: device time then shows up in `mano`."""

    detect: float = 0.0
    crop: float = 0.0
    forward: float = 0.0
    mano: float = 0.0
    camera: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.detect + self.crop + self.forward + self.mano + self.camera + sum(self.extra.values())
