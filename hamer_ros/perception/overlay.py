"""Drawing hands over the image they came from: the one renderer of the CLI overlays and the node's
debug image. It draws the 3D result projected with the camera's K and distortion (not the
detector's 2D keypoints), so a bad placement shows as a skeleton or mesh off the hand."""
from __future__ import annotations

import cv2
import numpy as np

from .camera import project_points
from .types import Hand

# OpenPose hand graph: wrist to each finger's base, then along the finger.
BONES = tuple((0 if k % 4 == 0 else k, k + 1) for k in range(20))
COLOURS = {True: (255, 128, 40), False: (40, 150, 255)}   # RGB: right orange, left blue
_BONE_INDEX = np.asarray(BONES, dtype=np.intp)


def draw_mesh(canvas: np.ndarray, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray,
              dist: np.ndarray | None, colour: tuple[int, int, int]) -> None:
    """Flat-shaded, depth-sorted triangles (painter's algorithm): enough to judge a fit by eye."""
    uv = project_points(vertices, K, dist)
    tri = vertices[faces]                                     # F,3,3
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    centres = tri.mean(1)
    view = -centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    facing = (normals * view).sum(1)
    order = np.argsort(-centres[:, 2])                        # far to near
    pix = np.round(uv[faces] * 16).astype(np.int32)           # 4 fractional bits for smooth edges
    base = np.asarray(colour, dtype=np.float64)
    for f in order:
        if facing[f] <= 0:                                    # back face (winding is per side)
            continue
        shade = tuple(int(c) for c in base * (0.35 + 0.65 * facing[f]))
        cv2.fillConvexPoly(canvas, pix[f], shade, lineType=cv2.LINE_AA, shift=4)


def _drawable(points: np.ndarray) -> bool:
    """Every point finite and in front of the camera (a projection of anything else is garbage)."""
    return bool(np.all(np.isfinite(points)) and np.all(points[..., 2] > 1e-6))


def draw_hands(image_rgb: np.ndarray, hands: list[Hand], K: np.ndarray, dist: np.ndarray | None = None,
               mesh_alpha: float = 0.6) -> np.ndarray:
    """A copy of the image with each hand's mesh (when present), projected 3D skeleton, box and
    label (side and its confidence, track id, depth) drawn on it."""
    out = np.ascontiguousarray(image_rgb[..., :3]).copy()
    thick = max(1, round(max(out.shape[:2]) / 640))
    meshes = [h for h in hands if h.vertices is not None and h.faces is not None and _drawable(h.vertices)]
    if meshes:
        layer = out.copy()
        for hand in sorted(meshes, key=lambda h: -float(h.wrist_position[2])):
            draw_mesh(layer, hand.vertices, hand.faces, K, dist, COLOURS[hand.is_right])
        out = cv2.addWeighted(layer, mesh_alpha, out, 1 - mesh_alpha, 0)
    for hand in hands:
        colour = COLOURS[hand.is_right]
        joints = np.asarray(hand.joints, dtype=np.float64)
        if _drawable(joints):
            uv = project_points(joints, K, dist)
            bones = list(np.round(uv[_BONE_INDEX]).astype(np.int32))
            cv2.polylines(out, bones, False, (255, 255, 255), thick + 2, cv2.LINE_AA)
            cv2.polylines(out, bones, False, colour, thick + 1, cv2.LINE_AA)
        x1, y1, x2, y2 = (int(round(v)) for v in np.nan_to_num(np.asarray(hand.box, dtype=np.float64)))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        label = (f"{hand.side} {hand.side_score:.2f}" + (f" #{hand.track_id}" if hand.track_id >= 0 else "")
                 + f" z={float(hand.wrist_position[2]):.2f}m")
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick, colour, thick,
                    cv2.LINE_AA)
    return out
