"""perception.Hand <-> ROS messages: HandArray (both ways), MeshFaces, TF transforms, RViz markers,
the debug image.

Speed notes (see benchmarks/node.py):
* float32[] fields take numpy arrays directly; the variable-length `vertices` gets an
  `array.array('f')` built from the bytes, which skips rosidl's per-element Python conversion.
* A mesh marker holds 4614 geometry_msgs/Point. Building that many Python message objects costs
  tens of milliseconds per hand, so MarkerArray (and the debug Image, megabytes of pixels) are
  written straight to their serialized CDR form with numpy and published as bytes, which
  rclpy's Publisher.publish accepts. `cdr_self_check()` compares that writer byte for byte with
  rclpy's own serializer at start-up; the node falls back to message objects if they differ
  (another middleware with another wire format).
"""
from __future__ import annotations

import array
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from geometry_msgs.msg import Point, TransformStamped
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from hamer_ros_msgs.msg import Hand as HandMsg
from hamer_ros_msgs.msg import HandArray, MeshFaces

from ..messages import JPEG_FORMAT, PLACEMENT_NAMES, hand_fields, jpeg_bytes, tf_poses
from ..perception.overlay import BONES, COLOURS
from ..perception.types import Hand

# The 20 bones of the OpenPose hand graph (joint order: see msg/Hand.msg), as the CLI overlays draw them.
SKELETON = BONES
_BONES = np.asarray(SKELETON, dtype=np.intp)

# RGBA in [0, 1], the overlays' colours; left and right differ so a mirrored or swapped hand is
# obvious in RViz.
SIDE_COLORS = {side: tuple(c / 255 for c in COLOURS[side == "right"]) + (0.85,) for side in ("left", "right")}
SKELETON_WIDTH = 0.004   # m, LINE_LIST line width


# ---------------------------------------------------------------------------------------------
# geometry helpers

# ---------------------------------------------------------------------------------------------
# HandArray

def hand_to_msg(hand: Hand, publish_vertices: bool = True) -> HandMsg:
    f = hand_fields(hand, publish_vertices)
    m = HandMsg()
    for name in ("side", "track_id", "score", "side_score", "box", "keypoints_2d", "global_orient", "hand_pose",
                 "betas", "reprojection_error", "has_mesh", "held", "placement", "scale", "depth_residual"):
        setattr(m, name, f[name])
    # The fixed-size Point[21] already holds 21 Points: fill them instead of building new ones.
    for points, name in ((m.joints, "joints"), (m.joints_local, "joints_local")):
        for p, (x, y, z) in zip(points, f[name].tolist()):
            p.x, p.y, p.z = x, y, z
    pos, o = m.wrist.position, m.wrist.orientation
    pos.x, pos.y, pos.z = f["wrist_position"].tolist()
    o.x, o.y, o.z, o.w = f["wrist_quaternion"].tolist()
    if len(f["vertices"]):
        # array.array from bytes: one memcpy, no per-element Python checks.
        m.vertices = array.array("f", f["vertices"].tobytes())
    return m


def hands_to_msg(header: Header, hands: Iterable[Hand], publish_vertices: bool = True) -> HandArray:
    """header: the source image's header, copied exactly (stamp and frame id)."""
    return HandArray(header=header, hands=[hand_to_msg(h, publish_vertices) for h in hands])


def hand_from_msg(m: HandMsg, faces: Mapping[bool, np.ndarray] | None = None) -> Hand:
    """A HandArray's hand back as a perception.Hand, for drawing (hand_viz_node): `faces` (from
    `faces_from_msg`, by is_right) go with the hand when it carries vertices."""
    from scipy.spatial.transform import Rotation

    is_right = m.side == HandMsg.RIGHT
    q = m.wrist.orientation
    vertices = np.asarray(m.vertices, dtype=np.float32).reshape(-1, 3) if len(m.vertices) else None
    return Hand(
        is_right=is_right, score=float(m.score), side_score=float(m.side_score),
        box=np.asarray(m.box, dtype=np.float64),
        joints=np.array([(p.x, p.y, p.z) for p in m.joints]),
        keypoints_2d=np.asarray(m.keypoints_2d, dtype=np.float64).reshape(21, 2),
        wrist_position=np.array([m.wrist.position.x, m.wrist.position.y, m.wrist.position.z]),
        wrist_orientation=Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(),
        reprojection_error=float(m.reprojection_error), vertices=vertices,
        faces=faces.get(is_right) if (faces is not None and vertices is not None) else None,
        track_id=int(m.track_id), held=bool(m.held),
        placement=PLACEMENT_NAMES.get(m.placement, "rgb"),
        scale=float(m.scale))


def mesh_faces_msg(faces_right: np.ndarray, faces_left: np.ndarray, num_vertices: int) -> MeshFaces:
    """The model's triangles, per side (each wound for its side), for the latched hands/mesh_faces."""
    def flat(f: np.ndarray) -> array.array:
        return array.array("I", np.ascontiguousarray(f, dtype=np.uint32).tobytes())
    return MeshFaces(num_vertices=int(num_vertices), right=flat(faces_right), left=flat(faces_left))


def faces_from_msg(m: MeshFaces) -> dict[bool, np.ndarray]:
    """is_right -> [F, 3] triangles; ValueError when the lists cannot index num_vertices vertices."""
    out = {}
    for is_right, flat in ((True, m.right), (False, m.left)):
        f = np.asarray(flat, dtype=np.int64)
        if f.size % 3 or (f.size and (f.min() < 0 or f.max() >= m.num_vertices)):
            raise ValueError(f"{'right' if is_right else 'left'} faces: {f.size} indices, not triangles of "
                             f"vertices below {m.num_vertices}")
        out[is_right] = f.reshape(-1, 3)
    return out


# ---------------------------------------------------------------------------------------------
# TF

def hand_transforms(header: Header, selected: Mapping[str, Hand], prefix: str = "",
                    joint_frames: bool = False) -> list[TransformStamped]:
    """messages.tf_poses as TransformStamped, stamped and framed by header (the image's)."""
    out = []
    for child, xyz, q in tf_poses(selected, prefix, joint_frames):
        t = TransformStamped(header=header, child_frame_id=child)
        tr, ro = t.transform.translation, t.transform.rotation
        tr.x, tr.y, tr.z = xyz
        ro.x, ro.y, ro.z, ro.w = q
        out.append(t)
    return out


# ---------------------------------------------------------------------------------------------
# Markers: one description, two writers (CDR bytes, message objects)

@dataclass
class MarkerSpec:
    ns: str
    id: int
    type: int
    action: int = Marker.ADD
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    points: np.ndarray | None = None      # [N, 3] float64, C-contiguous


def marker_specs(hands: Sequence[Hand], with_mesh: bool = True) -> list[MarkerSpec]:
    """DELETEALL first (so hands that left the image vanish), then per hand slot i: the mesh
    (`mesh`, id i; TRIANGLE_LIST of 1538 triangles when the hand has one) and the skeleton
    (`skeleton`, id i; LINE_LIST of the 20 bones). Ids are stable per slot."""
    specs = [MarkerSpec(ns="", id=0, type=Marker.CUBE, action=Marker.DELETEALL)]
    for i, h in enumerate(hands):
        color = SIDE_COLORS[h.side]
        if with_mesh and h.vertices is not None and h.faces is not None:
            tri = np.asarray(h.vertices, dtype=np.float64)[np.asarray(h.faces)].reshape(-1, 3)
            specs.append(MarkerSpec(ns="mesh", id=i, type=Marker.TRIANGLE_LIST, color=color, points=tri))
        bones = np.asarray(h.joints, dtype=np.float64)[_BONES].reshape(-1, 3)
        specs.append(MarkerSpec(ns="skeleton", id=i, type=Marker.LINE_LIST,
                                scale=(SKELETON_WIDTH, 0.0, 0.0), color=color[:3] + (1.0,), points=bones))
    return specs


def marker_array_msg(header: Header, specs: Sequence[MarkerSpec]) -> MarkerArray:
    """Message objects (slow for meshes: the fallback and the reference for the CDR writer)."""
    out = MarkerArray()
    for s in specs:
        m = Marker(header=header, ns=s.ns, id=s.id, type=s.type, action=s.action)
        m.pose.orientation.w = 1.0
        m.scale.x, m.scale.y, m.scale.z = s.scale
        m.color = ColorRGBA(r=s.color[0], g=s.color[1], b=s.color[2], a=s.color[3])
        if s.points is not None:
            m.points = [Point(x=x, y=y, z=z) for x, y, z in s.points.tolist()]
        out.markers.append(m)
    return out


class _CdrWriter:
    """Little-endian plain CDR (XCDR1) as ROS 2's Fast DDS writes it: a 4-byte encapsulation
    header, then every primitive aligned to its size, counted from the end of that header."""

    HEADER = b"\x00\x01\x00\x00"   # CDR_LE, no options

    def __init__(self) -> None:
        self._parts: list[bytes] = [self.HEADER]
        self._n = 0

    def _align(self, a: int) -> None:
        r = self._n % a
        if r:
            self._parts.append(b"\0" * (a - r))
            self._n += a - r

    def raw(self, b: bytes) -> None:
        self._parts.append(b)
        self._n += len(b)

    def pack(self, fmt: str, align: int, *values: Any) -> None:
        self._align(align)
        self.raw(struct.pack("<" + fmt, *values))

    def u8(self, v: int) -> None:
        self.raw(bytes((v & 0xFF,)))

    def u32(self, v: int) -> None:
        self.pack("I", 4, v)

    def string(self, s: str) -> None:
        b = s.encode() + b"\0"
        self.u32(len(b))
        self.raw(b)

    def header(self, sec: int, nanosec: int, frame_id: str) -> None:
        self.pack("iI", 4, sec, nanosec)
        self.string(frame_id)

    def f64_block(self, a: np.ndarray) -> None:
        """A sequence<struct of float64s> body: aligned once, then the raw array."""
        if a.size:
            self._align(8)
            self.raw(np.ascontiguousarray(a, dtype="<f8").tobytes())

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def marker_array_cdr(stamp_sec: int, stamp_nanosec: int, frame_id: str, specs: Sequence[MarkerSpec]) -> bytes:
    """visualization_msgs/MarkerArray (Jazzy layout) serialized, for Publisher.publish(bytes)."""
    w = _CdrWriter()
    w.u32(len(specs))
    for s in specs:
        w.header(stamp_sec, stamp_nanosec, frame_id)
        w.string(s.ns)
        w.pack("iii", 4, s.id, s.type, s.action)
        w.pack("7d", 8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)   # pose: identity
        w.pack("3d", 8, *s.scale)
        w.pack("4f", 4, *s.color)
        w.pack("iI", 4, 0, 0)                                 # lifetime 0 = forever (DELETEALL clears)
        w.u8(0)                                               # frame_locked
        pts = s.points if s.points is not None else np.empty((0, 3))
        w.u32(len(pts))
        w.f64_block(pts)
        w.u32(0)                  # colors
        w.string("")              # texture_resource
        w.header(0, 0, "")        # texture: sensor_msgs/CompressedImage header
        w.string("")              #   format
        w.u32(0)                  #   data
        w.u32(0)                  # uv_coordinates
        w.string("")              # text
        w.string("")              # mesh_resource
        w.string("")              # mesh_file.filename
        w.u32(0)                  # mesh_file.data
        w.u8(0)                   # mesh_use_embedded_materials
    return w.getvalue()


# ---------------------------------------------------------------------------------------------
# Debug image

def image_cdr(stamp_sec: int, stamp_nanosec: int, frame_id: str, rgb: np.ndarray) -> bytes:
    """sensor_msgs/Image (rgb8) serialized, for Publisher.publish(bytes)."""
    h, w = rgb.shape[:2]
    cw = _CdrWriter()
    cw.header(stamp_sec, stamp_nanosec, frame_id)
    cw.pack("II", 4, h, w)
    cw.string("rgb8")
    cw.u8(0)                      # is_bigendian
    cw.u32(w * 3)                 # step
    cw.u32(h * w * 3)
    cw.raw(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    return cw.getvalue()


def image_msg(header: Header, rgb: np.ndarray) -> Image:
    h, w = rgb.shape[:2]
    return Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                 data=array.array("B", np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()))


# CompressedImage.format as image_transport's compressed plugin writes it for an rgb8 source
# (the JPEG holds BGR, as OpenCV writes it); image_transport's subscribers decode by it.
def compressed_image_msg(header: Header, rgb: np.ndarray, quality: int = 80) -> CompressedImage:
    """The image as sensor_msgs/CompressedImage (JPEG), for hands/debug_image/compressed."""
    return CompressedImage(header=header, format=JPEG_FORMAT, data=array.array("B", jpeg_bytes(rgb, quality)))


def scale_image(rgb: np.ndarray, scale: float) -> np.ndarray:
    """The image resized by `scale` (area averaging, as for thumbnails); unchanged at 1."""
    if scale >= 1.0:
        return rgb
    import cv2

    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------

def cdr_self_check() -> str | None:
    """None when rclpy reads the CDR writers' bytes back as exactly the messages its own
    serializer writes for the same content (so they may be published as bytes); otherwise what
    differs."""
    from rclpy.serialization import deserialize_message, serialize_message

    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_001, 987_654_321
    sec, nsec, frame = header.stamp.sec, header.stamp.nanosec, header.frame_id
    rng = np.random.default_rng(0)
    specs = [MarkerSpec(ns="", id=0, type=Marker.CUBE, action=Marker.DELETEALL),
             MarkerSpec(ns="mesh", id=0, type=Marker.TRIANGLE_LIST, color=(0.1, 0.2, 0.3, 0.4),
                        points=rng.normal(size=(9, 3))),
             MarkerSpec(ns="skeleton", id=1, type=Marker.LINE_LIST, scale=(0.004, 0.0, 0.0),
                        points=rng.normal(size=(4, 3)))]
    rgb = rng.integers(0, 255, (3, 5, 3), dtype=np.uint8)
    checks = (("MarkerArray", marker_array_cdr(sec, nsec, frame, specs),
               serialize_message(marker_array_msg(header, specs))),
              ("Image", image_cdr(sec, nsec, frame, rgb), serialize_message(image_msg(header, rgb))))
    # Compared after deserializing both: Fast CDR leaves its alignment padding uninitialised, so
    # the bytes themselves may differ where no field lives.
    for name, ours, ref in checks:
        cls = MarkerArray if name == "MarkerArray" else Image
        try:
            got = deserialize_message(ours, cls)
        except Exception as e:  # noqa: BLE001 -- any failure means "do not use the writer"
            return f"{name}: rclpy cannot read our CDR ({type(e).__name__}: {e})"
        if len(ours) != len(ref) or got != deserialize_message(ref, cls):
            return f"{name}: our CDR ({len(ours)} bytes) does not match rclpy's ({len(ref)} bytes)"
    return None
