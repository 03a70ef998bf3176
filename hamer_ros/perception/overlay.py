"""Drawing hands over the image they came from (CLI overlays, the node's debug image)."""
from __future__ import annotations

import cv2
import numpy as np

from .types import Hand

# OpenPose hand graph: wrist to each finger's base, then along the finger.
BONES = tuple((0 if k % 4 == 0 else k, k + 1) for k in range(20))
COLOURS = {True: (255, 128, 40), False: (40, 150, 255)}   # RGB: right orange, left blue


def project(points: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
    """[N,3] camera-frame points → [N,2] pixels, through the lens distortion when given."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if dist is not None and np.any(np.asarray(dist) != 0):
        uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), np.asarray(K, np.float64),
                                  np.asarray(dist, np.float64))
        return uv.reshape(-1, 2)
    z = np.maximum(pts[:, 2:], 1e-6)
    return (pts[:, :2] / z) @ np.asarray(K)[:2, :2].T + np.asarray(K)[:2, 2]


def draw_mesh(canvas: np.ndarray, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray,
              dist: np.ndarray | None, colour: tuple[int, int, int]) -> None:
    """Flat-shaded, depth-sorted triangles (painter's algorithm): enough to judge a fit by eye."""
    uv = project(vertices, K, dist)
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


def draw_hands(image_rgb: np.ndarray, hands: list[Hand], K: np.ndarray, dist: np.ndarray | None = None,
               mesh_alpha: float = 0.6) -> np.ndarray:
    """A copy of the image with each hand's mesh (when present), skeleton and box drawn on it."""
    out = np.ascontiguousarray(image_rgb[..., :3]).copy()
    meshes = out.copy()
    any_mesh = False
    for hand in sorted(hands, key=lambda h: -float(h.wrist_position[2])):
        if hand.vertices is not None and hand.faces is not None:
            draw_mesh(meshes, hand.vertices, hand.faces, K, dist, COLOURS[hand.is_right])
            any_mesh = True
    if any_mesh:
        out = cv2.addWeighted(meshes, mesh_alpha, out, 1 - mesh_alpha, 0)
    for hand in hands:
        colour = COLOURS[hand.is_right]
        uv = project(hand.joints, K, dist)
        for a, b in BONES:
            cv2.line(out, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)),
                     (255, 255, 255), 3, cv2.LINE_AA)
            cv2.line(out, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)),
                     colour, 2, cv2.LINE_AA)
        x1, y1, x2, y2 = np.round(hand.box).astype(int)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1)
        label = f"{hand.side} {hand.score:.2f} z={hand.wrist_position[2]:.2f}m"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return out
