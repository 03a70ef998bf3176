"""hand_viz_node: what a person looks at, in its own process, so it never delays what a robot uses.

It subscribes to the perception node's hands (HandArray) and the latched mesh triangles
(hands/mesh_faces), and publishes:
- hands/markers, from each HandArray as it arrives (meshes when the HandArray carries vertices);
- hands/debug_image and hands/debug_image/compressed: the hands drawn over the image they came
  from, paired by exact stamp and frame id, with that image's CameraInfo. The image subscription
  exists only while someone subscribes to a debug image.
Drawing runs on its own thread (newest pair wins); the executor thread only stores and pairs.
Every output carries the header of the image (and HandArray) it was made from.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from hamer_ros_msgs.msg import HandArray, MeshFaces

from ..perception.overlay import draw_hands
from ..perception.types import Hand
from .camera_info_sub import CameraInfoSubscription
from .convert import (cdr_self_check, compressed_image_msg, faces_from_msg, hand_from_msg, image_cdr, image_msg,
                      marker_array_cdr, marker_array_msg, marker_specs, scale_image)
from .image import ImageConversionError, image_to_rgb
from .log import ThrottledLog
from .pairing import StampPairer
from ..settings import VIZ_PARAMETERS
from .parameters import declare_parameters
from .sync import LatestMailbox, format_stamp, intrinsics_from_camera_info, stamp_to_ns

VIZ_NODE_NAME = "hand_viz_node"
COMPRESSED_SUFFIX = "/compressed"    # named and formatted as image_transport's compressed plugin does
MAX_WAITING_IMAGES = 100


class HandVizNode(Node):
    """See the module docstring. ParameterProblem (a ValueError) for a bad parameter value."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(VIZ_NODE_NAME, **kwargs)
        self._log = ThrottledLog(self.get_logger())
        values = declare_parameters(self, VIZ_PARAMETERS)
        self._rectified = values["image_is_rectified"]
        self._scale = values["debug_image_scale"]
        self._jpeg_quality = values["debug_image_jpeg_quality"]
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._pairer: StampPairer[Image, list[Hand]] = StampPairer(int(values["pair_window"] * 1e9),
                                                                  MAX_WAITING_IMAGES)
        self._reported_gone = 0
        self._faces: dict[bool, np.ndarray] | None = None
        self._infos: dict[str, Any] = {}      # frame_id -> the newest CameraInfo's intrinsics
        self._cdr_problem = cdr_self_check()
        if self._cdr_problem:
            self._log.warning("cdr", f"publishing markers and debug images as message objects (slower): "
                              f"{self._cdr_problem}")

        viewer = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._marker_pub = self.create_publisher(MarkerArray, "hands/markers",
                                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._debug_pub = self.create_publisher(Image, "hands/debug_image", viewer)
        self._compressed_pub = self.create_publisher(CompressedImage, "hands/debug_image" + COMPRESSED_SUFFIX,
                                                     viewer)
        self.create_subscription(HandArray, "hands", self._on_hands,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(MeshFaces, "hands/mesh_faces", self._on_faces, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._info = CameraInfoSubscription(self, self._on_camera_info, self._on_incompatible_info)
        self._image_topic = self.resolve_topic_name("image")
        self._image_sub = None
        self._want_markers = self._want_debug = self._want_compressed = False

        self._box: LatestMailbox[tuple[Image, list[Hand]]] = LatestMailbox()
        self._drawer = threading.Thread(target=self._draw_loop, name="hand_viz_draw", daemon=True)
        self._drawer.start()
        self.create_timer(0.5, self._check_graph)
        self._check_graph()

    # ----- graph (executor thread) ------------------------------------------------------------

    def _check_graph(self) -> None:
        """Caches who listens (the per-message path asks the graph nothing), follows CameraInfo's
        publishers, and subscribes to images only while a debug image has a subscriber."""
        try:
            self._want_markers = self._marker_pub.get_subscription_count() > 0
            self._want_debug = self._debug_pub.get_subscription_count() > 0
            self._want_compressed = self._compressed_pub.get_subscription_count() > 0
            self._info.refresh()
            want_images = self._want_debug or self._want_compressed
            if want_images and self._image_sub is None:
                self._image_sub = self.create_subscription(
                    Image, "image", self._on_image,
                    QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
            elif not want_images and self._image_sub is not None:
                self.destroy_subscription(self._image_sub)
                self._image_sub = None
            gone = self._pairer.image_gone - self._reported_gone
            if gone > 0 and want_images:
                self._reported_gone = self._pairer.image_gone
                self._log.warning("image_gone", (
                    f"{gone} HandArray(s) came after their image had been let go, so no debug image for them: "
                    f"the perception node takes longer than pair_window ({self._pairer.window_ns / 1e9:g} s). "
                    f"Raise pair_window, or check that {self._image_topic} is the perception node's image"),
                    period=30.0)
        except Exception as e:  # noqa: BLE001 -- e.g. during shutdown
            self._log.warning("graph", f"graph check failed: {e!r}")

    def _on_incompatible_info(self, qos: QoSProfile, event: Any) -> None:
        self._log.warning(f"qos:{self._info.topic}", (
            f"a CameraInfo publisher on {self._info.topic} has incompatible QoS: its messages will not arrive, "
            "and debug images need them"), period=10.0)

    # ----- callbacks (executor thread) --------------------------------------------------------

    def _on_faces(self, msg: MeshFaces) -> None:
        try:
            self._faces = faces_from_msg(msg)
        except ValueError as e:
            self._log.warning("faces", f"ignoring malformed mesh faces on hands/mesh_faces: {e}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._infos[str(msg.header.frame_id)] = intrinsics_from_camera_info(msg, rectified=self._rectified)
        except Exception as e:  # noqa: BLE001 -- a malformed message must not stop the node
            self._log.warning("caminfo", f"ignoring a malformed CameraInfo on {self._info.topic}: {e}")

    def _on_hands(self, msg: HandArray) -> None:
        if not (self._want_markers or self._image_sub is not None):
            return
        header = msg.header
        hands = [hand_from_msg(h, self._faces) for h in msg.hands]      # once, for markers and overlay
        if self._want_markers:
            try:
                self._publish_markers(header, hands)
            except Exception as e:  # noqa: BLE001 -- one bad message must never end the node
                self._log.warning(f"markers:{type(e).__name__}", f"markers failed ({type(e).__name__}: {e})")
        if self._image_sub is not None:
            pair = self._pairer.add_result(stamp_to_ns(header.stamp), str(header.frame_id), hands)
            if pair is not None:
                self._box.put(pair)

    def _on_image(self, msg: Image) -> None:
        pair = self._pairer.add_image(stamp_to_ns(msg.header.stamp), str(msg.header.frame_id), msg)
        if pair is not None:
            self._box.put(pair)

    def _publish_markers(self, header: Header, hands: list[Hand]) -> None:
        specs = marker_specs(hands)
        st = header.stamp
        self._marker_pub.publish(marker_array_msg(header, specs) if self._cdr_problem
                                 else marker_array_cdr(st.sec, st.nanosec, header.frame_id, specs))

    # ----- drawing thread ---------------------------------------------------------------------

    def _draw_loop(self) -> None:
        while True:
            pair = self._box.get()
            if pair is None:
                return
            try:
                self._publish_debug(*pair)
            except ImageConversionError as e:
                self._log.warning(f"image:{e.key}", f"no debug image for an image on {self._image_topic}: {e}")
            except Exception as e:  # noqa: BLE001 -- a viewer's image must never end the node
                if self._box.closed:
                    return
                self._log.warning(f"debug:{type(e).__name__}", f"debug image failed ({type(e).__name__}: {e})")

    def _publish_debug(self, image: Image, hands: list[Hand]) -> None:
        header = image.header
        frame = str(header.frame_id)
        intrinsics = self._infos.get(frame)
        problem = "none has arrived for this frame" if intrinsics is None else intrinsics.problem
        if problem:
            self._log.warning(f"caminfo:{frame}", (
                f"no debug image for {format_stamp(stamp_to_ns(header.stamp))}: no usable CameraInfo for frame "
                f"'{frame}' on {self._info.topic} ({problem}). Remap camera_info:= to the image's CameraInfo"))
            return
        rgb = image_to_rgb(image)
        overlay = draw_hands(rgb, hands, intrinsics.K, intrinsics.D)
        overlay = scale_image(overlay, self._scale)
        if self._want_debug:
            st = header.stamp
            self._debug_pub.publish(image_msg(header, overlay) if self._cdr_problem
                                    else image_cdr(st.sec, st.nanosec, frame, overlay))
        if self._want_compressed:
            self._compressed_pub.publish(compressed_image_msg(header, overlay, self._jpeg_quality))

    # ----- parameters, shutdown ---------------------------------------------------------------

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Rejects a value out of its range or choices with the reason, else applies it."""
        specs = {s.name: s for s in VIZ_PARAMETERS}
        for p in params:
            spec = specs.get(p.name)
            problem = spec.validate(p.value) if spec is not None else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for p in params:
            if p.name == "debug_image_scale":
                self._scale = p.value
            elif p.name == "debug_image_jpeg_quality":
                self._jpeg_quality = p.value
        return SetParametersResult(successful=True)

    def close(self) -> None:
        self._box.close()
        self._drawer.join(timeout=2.0)


def main(args: list[str] | None = None) -> None:
    from .entry import run_node

    run_node(VIZ_NODE_NAME, HandVizNode, args)


if __name__ == "__main__":
    main()
