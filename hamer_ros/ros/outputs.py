"""What hand_mesh_node publishes for a robot: HandArray and TF (lifecycle publishers: only while
active), the mesh triangles once (latched), and /diagnostics (always, so a robot monitor sees an
inactive or paused node too). Drawing is hand_viz_node's (viz_node.py)."""
from __future__ import annotations

from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from hamer_ros_msgs.msg import HandArray, MeshFaces

from ..messages import tf_hands
from .convert import hand_transforms, hands_to_msg, mesh_faces_msg
from ..settings import frame_prefix
from .parameters import Options


class Outputs:
    """The publishers, made at configure and destroyed at cleanup. `warn(key, text)` reports a
    frame that cannot have TF."""

    def __init__(self, node: Any, pipeline: Any, warn: Callable[[str, str], None]) -> None:
        self._node = node
        self._warn = warn
        self._namespace = node.get_namespace()
        self._tf_tracks: dict[str, int] = {}     # per side, the track its TF frame shows
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.hands = node.create_lifecycle_publisher(HandArray, "hands", reliable)
        # As tf2_ros.TransformBroadcaster: /tf, reliable, depth 100.
        self.tf = node.create_lifecycle_publisher(TFMessage, "/tf",
                                                  QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self.faces = None
        faces_right = getattr(pipeline, "faces_right", None)
        if pipeline.has_mesh and faces_right is not None:
            # Fixed for the model: sent once, and kept for subscribers that come later.
            self.faces = node.create_publisher(MeshFaces, "hands/mesh_faces", QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
            self.faces.publish(mesh_faces_msg(faces_right, pipeline.faces_left, int(faces_right.max()) + 1))

    def tf_prefix(self, opts: Options) -> str:
        return frame_prefix(opts.tf_prefix, self._namespace)

    def publish(self, header: Header, hands: list, opts: Options) -> None:
        """One frame's HandArray and, per side, its TF frame(s); all under the image's header."""
        self.hands.publish(hands_to_msg(header, hands, opts.publish_vertices))
        if not (opts.publish_tf and hands):
            return
        if not header.frame_id:
            self._warn("empty_frame_id", "the image has an empty header.frame_id: no TF published (set the "
                       "camera driver's frame id, e.g. camera_color_optical_frame)")
            return
        selected = tf_hands(hands, self._tf_tracks)
        self._tf_tracks = {side: h.track_id for side, h in selected.items()}
        transforms = hand_transforms(header, selected, self.tf_prefix(opts), opts.publish_joint_frames)
        if transforms:
            self.tf.publish(TFMessage(transforms=transforms))

    def destroy(self) -> None:
        node = self._node
        node.destroy_lifecycle_publisher(self.hands)
        node.destroy_lifecycle_publisher(self.tf)
        node.destroy_publisher(self.diagnostics)
        if self.faces is not None:
            node.destroy_publisher(self.faces)
