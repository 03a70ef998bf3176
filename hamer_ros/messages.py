"""What hamer_ros publishes about its hands, without ROS: the HandArray fields of a hand, the TF
poses of the hand frames, quaternions. The node (ros/convert.py) fills rclpy messages from it,
the recording annotator (bag/) rosbags' ones, so both write the same numbers."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .perception.types import Hand

# hamer_ros_msgs/Hand's constants (msg/Hand.msg; a test holds them equal to the generated ones)
SIDE_LEFT, SIDE_RIGHT = 0, 1
PLACEMENT_CODES = {"rgb": 0, "rgbd": 1, "rgbd-held": 2}
PLACEMENT_NAMES = {code: name for name, code in PLACEMENT_CODES.items()}


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices -> [..., 4] unit quaternions (x, y, z, w), w >= 0.

    Shepperd's method: picks the numerically largest of 4w², 4x², 4y², 4z² as the pivot, so it is
    stable for every rotation (incl. 180°). Slightly non-orthonormal input still gives a unit
    quaternion close to the nearest rotation.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape == (3, 3):
        return _quaternion_one(R)
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    trace = m00 + m11 + m22
    cands = np.stack([trace, m00, m11, m22], axis=-1)
    pivot = np.argmax(cands, axis=-1)
    q = np.empty(R.shape[:-2] + (4,))
    # 4 candidate solutions, each computed everywhere and selected by pivot (vectorised).
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sqrt(np.maximum(1.0 + trace, 1e-300)) * 2.0
        qw = np.stack([(R[..., 2, 1] - R[..., 1, 2]) / s, (R[..., 0, 2] - R[..., 2, 0]) / s,
                       (R[..., 1, 0] - R[..., 0, 1]) / s, 0.25 * s], axis=-1)
        s = np.sqrt(np.maximum(1.0 + m00 - m11 - m22, 1e-300)) * 2.0
        qx = np.stack([0.25 * s, (R[..., 0, 1] + R[..., 1, 0]) / s, (R[..., 0, 2] + R[..., 2, 0]) / s,
                       (R[..., 2, 1] - R[..., 1, 2]) / s], axis=-1)
        s = np.sqrt(np.maximum(1.0 - m00 + m11 - m22, 1e-300)) * 2.0
        qy = np.stack([(R[..., 0, 1] + R[..., 1, 0]) / s, 0.25 * s, (R[..., 1, 2] + R[..., 2, 1]) / s,
                       (R[..., 0, 2] - R[..., 2, 0]) / s], axis=-1)
        s = np.sqrt(np.maximum(1.0 - m00 - m11 + m22, 1e-300)) * 2.0
        qz = np.stack([(R[..., 0, 2] + R[..., 2, 0]) / s, (R[..., 1, 2] + R[..., 2, 1]) / s, 0.25 * s,
                       (R[..., 1, 0] - R[..., 0, 1]) / s], axis=-1)
    allq = np.stack([qw, qx, qy, qz], axis=-2)                      # [..., 4 pivots, 4]
    q = np.take_along_axis(allq, pivot[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., 3:4] < 0, -q, q)                          # one canonical sign


def _quaternion_one(R: np.ndarray) -> np.ndarray:
    """The same for one matrix in plain floats: ~20x faster than the vectorised form on one 3x3,
    and the node converts a few per frame."""
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = R.tolist()
    trace = m00 + m11 + m22
    pivot = max((trace, 0), (m00, 1), (m11, 2), (m22, 3))[1]
    if pivot == 0:
        s = math.sqrt(max(1.0 + trace, 1e-300)) * 2.0
        q = ((m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s, 0.25 * s)
    elif pivot == 1:
        s = math.sqrt(max(1.0 + m00 - m11 - m22, 1e-300)) * 2.0
        q = (0.25 * s, (m01 + m10) / s, (m02 + m20) / s, (m21 - m12) / s)
    elif pivot == 2:
        s = math.sqrt(max(1.0 - m00 + m11 - m22, 1e-300)) * 2.0
        q = ((m01 + m10) / s, 0.25 * s, (m12 + m21) / s, (m02 - m20) / s)
    else:
        s = math.sqrt(max(1.0 - m00 - m11 + m22, 1e-300)) * 2.0
        q = ((m02 + m20) / s, (m12 + m21) / s, 0.25 * s, (m10 - m01) / s)
    n = math.sqrt(sum(c * c for c in q))
    sign = -1.0 if q[3] < 0 else 1.0
    return np.array([sign * c / n for c in q])


def tf_hands(hands: Sequence[Hand], previous: Mapping[str, int] | None = None) -> dict[str, Hand]:
    """The hand each side's TF frame shows (TF has one frame per side): only a hand seen in this
    frame, never a held one, and with finite values; the track the frame showed last while that
    track is seen (two hands of one side never swap it back and forth), else the best-scoring."""
    previous = previous or {}
    live = [h for h in hands if not h.held and h.is_finite()]

    def rank(h: Hand) -> tuple[bool, float]:
        return h.track_id >= 0 and h.track_id == previous.get(h.side), h.score

    # sides in a fixed order: a set of strings iterates in a per-process order (hash seeds)
    return {side: max((h for h in live if h.side == side), key=rank) for side in sorted({h.side for h in live})}


def hand_fields(hand: Hand, publish_vertices: bool = True) -> dict[str, Any]:
    """hamer_ros_msgs/Hand's fields for one hand: numbers, and numpy arrays of the field's type
    (Point[21] as a [21, 3] float64 array, the wrist Pose as `wrist_position` [3] and
    `wrist_quaternion` [4] x, y, z, w). MANO fields are zeros without a mesh; `vertices` is empty
    unless published."""
    on_depth = hand.placement == "rgbd"

    def f32(value: Any, n: int) -> np.ndarray:
        return np.zeros(n, np.float32) if value is None else np.asarray(value, dtype=np.float32).reshape(n)

    has_mesh = hand.vertices is not None
    return {
        "side": SIDE_RIGHT if hand.is_right else SIDE_LEFT,
        "track_id": int(hand.track_id),
        "score": float(hand.score),
        "side_score": float(hand.side_score),
        "box": f32(hand.box, 4),
        "joints": np.asarray(hand.joints, dtype=np.float64).reshape(21, 3),
        "keypoints_2d": f32(hand.keypoints_2d, 42),
        "wrist_position": np.asarray(hand.wrist_position, dtype=np.float64).reshape(3),
        "wrist_quaternion": rotation_to_quaternion(hand.wrist_orientation),
        "joints_local": np.asarray(hand.joints_local, dtype=np.float64).reshape(21, 3),
        "global_orient": f32(hand.global_orient, 9),
        "hand_pose": f32(hand.hand_pose, 135),
        "betas": f32(hand.betas, 10),
        "reprojection_error": float(hand.reprojection_error),
        "vertices": (np.ascontiguousarray(hand.vertices, dtype=np.float32).reshape(-1)
                     if publish_vertices and has_mesh else np.zeros(0, np.float32)),
        "has_mesh": has_mesh,
        "held": bool(hand.held),
        "placement": PLACEMENT_CODES[hand.placement],
        "scale": float(hand.scale),
        # NaN whenever not placed on this frame's depth, whatever the Hand holds: the field's documented meaning
        "depth_residual": float(hand.depth_residual) if on_depth else float("nan"),
    }


def hand_frame_name(prefix: str, side: str, name: str = "wrist") -> str:
    return f"{prefix}{side}_hand/{name}"


def tf_poses(selected: Mapping[str, Hand], prefix: str = "", joint_frames: bool = False
             ) -> list[tuple[str, list[float], list[float]]]:
    """(child frame, translation, quaternion x y z w) from the camera frame: <prefix><side>_hand/wrist
    for each side's hand (see tf_hands), and, with joint_frames, <prefix><side>_hand/joint_<k>
    (k = 0..20, camera-aligned, identity rotation: a joint position has no orientation of its own)."""
    out = []
    for side, h in selected.items():
        out.append((hand_frame_name(prefix, side), np.asarray(h.wrist_position, dtype=np.float64).reshape(3).tolist(),
                    rotation_to_quaternion(h.wrist_orientation).tolist()))
        if joint_frames:
            for k, xyz in enumerate(np.asarray(h.joints, dtype=np.float64).reshape(21, 3).tolist()):
                out.append((hand_frame_name(prefix, side, f"joint_{k}"), xyz, [0.0, 0.0, 0.0, 1.0]))
    return out


# sensor_msgs/CompressedImage.format of a JPEG made from an rgb8 image (image_transport's wording)
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"


def jpeg_bytes(rgb: np.ndarray, quality: int = 80) -> bytes:
    """An RGB image as JPEG, for a CompressedImage of JPEG_FORMAT."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape} image as JPEG")
    return jpeg.tobytes()
