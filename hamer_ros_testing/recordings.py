"""rosbag2 recordings written for tests and benchmarks, with rosbags' writer (not this package's
reader or writer): a camera's colour images (raw or JPEG), its CameraInfo, optionally an aligned
depth stream and broken messages."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass
class Camera:
    frame_id: str = "camera_color_optical_frame"
    K: tuple[float, float, float, float] = (600.0, 600.0, 320.0, 240.0)   # fx, fy, cx, cy
    ns: str = "/camera"


@dataclass
class Plan:
    """What write_recording puts in: frames[i] is shown at stamps[i] (seconds)."""

    frames: list[np.ndarray]
    stamps: list[float]
    camera: Camera = field(default_factory=Camera)
    compressed: bool = False
    camera_info_once: bool = False     # one CameraInfo at the start (a latched driver), else one per frame
    camera_info_from: int = 0          # no CameraInfo before this frame (a driver started late); -1: none at all
    depth_m: float | None = None       # an aligned depth image per frame, this many metres everywhere
    broken: set[int] = field(default_factory=set)      # these frames' image data is cut short
    extra_topics: dict[str, str] = field(default_factory=dict)   # topic -> a std_msgs/String payload


def write_recording(path: Path, plan: Plan | list[Plan], storage: str = "mcap") -> Path:
    """One recording of one camera, or of several (a list: each Plan's camera under its own
    namespace and frame id, their messages interleaved by time)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    plans = plan if isinstance(plan, list) else [plan]
    with Writer(path, version=8 if storage == "sqlite3" else 9, storage_plugin=plugin) as w:
        records = [r for p in plans for r in _camera_messages(w, ts, p)]
        for log, conn, data in sorted(records, key=lambda r: r[0]):
            w.write(conn, log, data)
    return path


def _camera_messages(w: object, ts: object, plan: Plan) -> list[tuple[int, object, bytes]]:
    T = ts.types
    cam = plan.camera
    out = []

    def hdr(t: float) -> object:
        ns = int(round(t * 1e9))
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                        frame_id=cam.frame_id)

    h0, w0 = plan.frames[0].shape[:2]
    fx, fy, cx, cy = cam.K

    def info(t: float) -> object:
        return T["sensor_msgs/msg/CameraInfo"](
            header=hdr(t), height=h0, width=w0, distortion_model="plumb_bob", d=np.zeros(5),
            k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1.0]), r=np.eye(3).reshape(-1),
            p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1.0, 0]), binning_x=0, binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))

    kind = "sensor_msgs/msg/CompressedImage" if plan.compressed else "sensor_msgs/msg/Image"
    image_topic = f"{cam.ns}/color/image_raw" + ("/compressed" if plan.compressed else "")
    c_img = w.add_connection(image_topic, kind, typestore=ts)
    c_info = w.add_connection(f"{cam.ns}/color/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
    c_depth = (w.add_connection(f"{cam.ns}/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image", typestore=ts)
               if plan.depth_m is not None else None)
    c_extra = {t: w.add_connection(t, "std_msgs/msg/String", typestore=ts) for t in plan.extra_topics}
    for i, (rgb, t) in enumerate(zip(plan.frames, plan.stamps)):
        log = int(round(t * 1e9)) + 3_000_000          # received 3 ms after the stamp
        first = plan.camera_info_from
        if first >= 0 and i >= first and (not plan.camera_info_once or i == first):
            out.append((log - 1_000_000, c_info, ts.serialize_cdr(info(t), "sensor_msgs/msg/CameraInfo")))
        if plan.compressed:
            ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            data = jpg.reshape(-1)
            if i in plan.broken:
                data = data[: len(data) // 3]
            msg = T[kind](header=hdr(t), format="jpeg", data=np.ascontiguousarray(data))
        else:
            data = np.ascontiguousarray(rgb).reshape(-1)
            if i in plan.broken:
                data = data[: len(data) // 3]
            msg = T[kind](header=hdr(t), height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                          is_bigendian=0, step=rgb.shape[1] * 3, data=data)
        out.append((log, c_img, ts.serialize_cdr(msg, kind)))
        if c_depth is not None:
            d = np.full(rgb.shape[:2], int(plan.depth_m * 1000), np.uint16)
            dm = T["sensor_msgs/msg/Image"](header=hdr(t), height=d.shape[0], width=d.shape[1], encoding="16UC1",
                                           is_bigendian=0, step=d.shape[1] * 2, data=d.view(np.uint8).reshape(-1))
            out.append((log + 2_000_000, c_depth, ts.serialize_cdr(dm, "sensor_msgs/msg/Image")))
        for topic, text in plan.extra_topics.items():
            out.append((log, c_extra[topic], ts.serialize_cdr(T["std_msgs/msg/String"](data=text), "std_msgs/msg/String")))
    return out
