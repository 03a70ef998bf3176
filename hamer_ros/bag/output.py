"""Writing annotations as an MCAP file of ROS 2 messages (CDR, ros2msg schemas): what
`ros2 bag play`, Foxglove and the `mcap` tools read. The messages are rosbags' classes filled from
hamer_ros.messages, the same numbers the node publishes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..messages import JPEG_FORMAT, hand_fields, jpeg_bytes, tf_poses
from ..perception.types import Hand
from .recording import typestore

HANDS_TOPIC = "/hands"
TF_TOPIC = "/tf"
FACES_TOPIC = "/hands/mesh_faces"
OVERLAY_TOPIC = "/hands/debug_image/compressed"
# A window's hands on its warm-up frames (not part of the result): the merge joins track ids on them.
WARMUP_TOPIC = "/hamer_ros/warmup/hands"

# rosbag2's form of a publisher's QoS (the rmw enums as numbers, which Humble and later read):
# what `ros2 bag play` offers on the topic. The faces are latched (reliable, transient local, depth
# 1), as the node publishes them, so a viewer started after the play still gets them.
LATCHED_QOS = ("- history: 1\n  depth: 1\n  reliability: 1\n  durability: 1\n  deadline:\n    sec: 9223372036\n"
               "    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n    nsec: 854775807\n  liveliness: 1\n"
               "  liveliness_lease_duration:\n    sec: 9223372036\n    nsec: 854775807\n"
               "  avoid_ros_namespace_conventions: false")
CHANNEL_METADATA = {FACES_TOPIC: {"offered_qos_profiles": LATCHED_QOS}}

HAND_ARRAY = "hamer_ros_msgs/msg/HandArray"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
MESH_FACES = "hamer_ros_msgs/msg/MeshFaces"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"


class McapOut:
    """An MCAP file being written: channels made on first use. flush() pushes what is written to
    the file (a killed job leaves every flushed chunk readable); close() writes the summary."""

    def __init__(self, path: str | Path, chunk_size: int = 1 << 20) -> None:
        from mcap.writer import Writer
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb")
        self._writer = Writer(self._file, chunk_size=chunk_size)
        self._writer.start(profile="ros2", library="hamer_ros")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}

    def _channel(self, topic: str, msgtype: str) -> int:
        if topic not in self._channels:
            if msgtype not in self._schemas:
                text, _ = typestore().generate_msgdef(msgtype, ros_version=2)
                self._schemas[msgtype] = self._writer.register_schema(msgtype, "ros2msg", text.encode())
            self._channels[topic] = self._writer.register_channel(topic, "cdr", self._schemas[msgtype],
                                                                  metadata=CHANNEL_METADATA.get(topic, {}))
        return self._channels[topic]

    def write(self, topic: str, msgtype: str, msg: Any, log_ns: int) -> None:
        self.write_cdr(topic, msgtype, bytes(typestore().serialize_cdr(msg, msgtype)), log_ns)

    def write_cdr(self, topic: str, msgtype: str, data: bytes, log_ns: int) -> None:
        self._writer.add_message(self._channel(topic, msgtype), log_time=log_ns, data=data, publish_time=log_ns)

    def metadata(self, name: str, data: dict[str, str]) -> None:
        self._writer.add_metadata(name, data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._writer.finish()
        self._file.close()


# --------------------------------------------------------------------------- rosbags messages

def header(stamp_ns: int, frame_id: str) -> Any:
    t = typestore().types
    return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](
        sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)), frame_id=frame_id)


def hand_array(hdr: Any, hands: list[Hand], publish_vertices: bool = True) -> Any:
    """hamer_ros_msgs/HandArray under the image's header."""
    t = typestore().types
    Point, Pose, Quaternion = t["geometry_msgs/msg/Point"], t["geometry_msgs/msg/Pose"], t["geometry_msgs/msg/Quaternion"]
    out = []
    for hand in hands:
        f = hand_fields(hand, publish_vertices)
        x, y, z, w = f["wrist_quaternion"].tolist()
        out.append(t["hamer_ros_msgs/msg/Hand"](
            side=f["side"], track_id=f["track_id"], score=f["score"], side_score=f["side_score"], box=f["box"],
            joints=[Point(x=a, y=b, z=c) for a, b, c in f["joints"].tolist()],
            keypoints_2d=f["keypoints_2d"],
            wrist=Pose(position=Point(*f["wrist_position"].tolist()), orientation=Quaternion(x=x, y=y, z=z, w=w)),
            joints_local=[Point(x=a, y=b, z=c) for a, b, c in f["joints_local"].tolist()],
            global_orient=f["global_orient"], hand_pose=f["hand_pose"], betas=f["betas"],
            reprojection_error=f["reprojection_error"], vertices=f["vertices"], has_mesh=f["has_mesh"],
            held=f["held"], placement=f["placement"], scale=f["scale"], depth_residual=f["depth_residual"]))
    return t[HAND_ARRAY](header=hdr, hands=out)


def tf_message(hdr: Any, selected: dict[str, Hand]) -> Any:
    """camera frame -> <side>_hand/wrist of each side's hand, as the node broadcasts by default."""
    t = typestore().types
    V, Q = t["geometry_msgs/msg/Vector3"], t["geometry_msgs/msg/Quaternion"]
    return t[TF_MESSAGE](transforms=[
        t["geometry_msgs/msg/TransformStamped"](
            header=hdr, child_frame_id=child,
            transform=t["geometry_msgs/msg/Transform"](translation=V(*xyz), rotation=Q(*q)))
        for child, xyz, q in tf_poses(selected)])


def mesh_faces(faces_right: np.ndarray, faces_left: np.ndarray, num_vertices: int) -> Any:
    return typestore().types[MESH_FACES](
        num_vertices=int(num_vertices), right=np.ascontiguousarray(faces_right, dtype=np.uint32).reshape(-1),
        left=np.ascontiguousarray(faces_left, dtype=np.uint32).reshape(-1))


def jpeg_image(hdr: Any, rgb: np.ndarray, quality: int = 80) -> Any:
    return typestore().types[COMPRESSED_IMAGE](header=hdr, format=JPEG_FORMAT,
                                                data=np.frombuffer(jpeg_bytes(rgb, quality), dtype=np.uint8))

