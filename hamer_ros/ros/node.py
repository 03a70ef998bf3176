"""hand_mesh_node: a thin ROS 2 shell around perception.HandPipeline.

Threads: the executor thread runs the callbacks, which only store things (the newest image into
a one-slot mailbox, CameraInfos into CameraInfoSync) and run timers and parameter services; one
worker thread converts, infers and publishes. A frame that arrives while the model is busy
replaces the waiting one and is counted as dropped: the output follows the camera with at most
one frame of delay, whatever the model's speed, and nothing queues.

Every output carries the input image's header (stamp and frame id) exactly.
"""
from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.event_handler import SubscriptionEventCallbacks, qos_policy_name_from_kind
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from hamer_ros.msg import HandArray

from ..perception.overlay import draw_hands
from ..weights import WEIGHTS_HINT
from .convert import (cdr_self_check, hand_transforms, hands_to_msg, image_cdr, image_msg,
                      marker_array_cdr, marker_array_msg, marker_specs)
from .image import ImageConversionError, image_to_rgb
from .sync import (SYNC_POLICIES, CameraInfoSync, LatestMailbox, StampMonitor, Throttle, format_stamp,
                   intrinsics_from_camera_info, stamp_to_ns)

NODE_NAME = "hand_mesh_node"

MODEL_HINT = f"To get meshes set checkpoint:=<...>/hamer_ckpts/checkpoints/hamer.ckpt. {WEIGHTS_HINT}"


class StartupError(RuntimeError):
    """A configuration the node cannot run with; main() logs it (no traceback) and exits 1."""


# ---------------------------------------------------------------------------------------------
# Parameters: one table, used to declare them, to validate them, and by the tests that check
# that config/hands.yaml and launch/hands.launch.py only set declared names.

def _check_device(v: str) -> str | None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v):
        return f"device must be auto, cpu, cuda, cuda:N or mps, got '{v}'"
    return None


def parse_rois(text: str) -> list[dict[str, Any]]:
    """The `rois` parameter: a YAML (or JSON) list of {box: [x1, y1, x2, y2], side: left|right}."""
    import yaml

    try:
        rois = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError as e:
        raise ValueError(f"rois is not valid YAML/JSON: {e}") from None
    if rois is None:
        rois = []
    if not isinstance(rois, list):
        raise ValueError(f"rois must be a list like '[{{box: [x1, y1, x2, y2], side: right}}]', got {text!r}")
    from ..perception.detect import FixedRoiDetector

    FixedRoiDetector(rois)   # raises ValueError naming the bad roi
    return rois


def _check_rois(v: str) -> str | None:
    try:
        parse_rois(v)
    except ValueError as e:
        return str(e)
    return None


def _check_frame_prefix(v: str) -> str | None:
    if v.startswith("/"):
        return f"tf_prefix must not start with '/' (tf2 frame ids are relative), got '{v}'"
    if not re.fullmatch(r"[A-Za-z0-9_/]*", v):
        return f"tf_prefix may hold only letters, digits, '_' and '/', got '{v}'"
    return None


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: bool | int | float | str      # also fixes the ROS parameter type
    description: str
    read_only: bool = False                # needs a restart (declared read-only)
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None

    def validate(self, value: Any) -> str | None:
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got '{value}'"
        if self.range is not None and not (self.range[0] <= value <= self.range[1]):
            return f"{self.name} must be in [{self.range[0]}, {self.range[1]}], got {value}"
        if self.check is not None:
            return self.check(value)
        return None


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "", "HaMeR checkpoint (.../hamer_ckpts/checkpoints/hamer.ckpt; "
              "model_config.yaml is read from the folder above checkpoints/). Empty: joints-only "
              "from MediaPipe's landmarks, no mesh.", read_only=True),
    ParamSpec("mano", "", "MANO_RIGHT.pkl, or the folder that holds it. Empty: MANO from the checkpoint's own copy.",
              read_only=True),
    ParamSpec("device", "auto", "Inference device: auto (cuda when available, else cpu), cpu, cuda, "
              "cuda:N.", read_only=True, check=_check_device),
    ParamSpec("precision", "fp32", "Network precision on the device: fp32, bf16 or fp16 (LayerNorm, "
              "attention and the geometry stay fp32).", read_only=True, choices=("fp32", "bf16", "fp16")),
    ParamSpec("backend", "eager", "Inference engine: eager, compile (torch.compile + CUDA graphs), "
              "tensorrt (cached engine; the first start builds it for minutes) or onnx (ONNX Runtime). "
              "One that cannot run or fails the 1 mm self-check falls back to eager, logged.",
              read_only=True, choices=("eager", "compile", "tensorrt", "onnx")),
    ParamSpec("engine_cache", "", "Folder of built engines; empty: ~/.cache/hamer_ros/engines.",
              read_only=True),
    ParamSpec("detector", "mediapipe", "Hand detector: mediapipe (boxes, sides and landmarks) or fixed "
              "(the boxes in rois, every frame).", read_only=True, choices=("mediapipe", "fixed")),
    ParamSpec("rois", "[]", "detector fixed: hand boxes as a YAML/JSON list in image pixels, e.g. "
              "'[{box: [x1, y1, x2, y2], side: right}]' (on the command line quote it twice: "
              "-p 'rois:=\"[...]\"').", check=_check_rois),
    ParamSpec("max_hands", 2, "Most hands per frame (the highest-scoring are kept).", range=(1, 10)),
    ParamSpec("min_score", 0.5, "Least detection confidence of a hand.", range=(0.0, 1.0)),
    ParamSpec("rescale", 2.0, "Crop side = rescale x max(4/3 w, h) of the hand box (2.0 as in "
              "HaMeR's demo).", range=(1.0, 4.0)),
    ParamSpec("refine_translation", True, "Place each hand by robust least squares on 2D keypoints "
              "(the detector's, else the network's own) with the camera's K and distortion; off: the "
              "network's weak-perspective placement."),
    ParamSpec("fit_rotation", True, "With refine_translation and detector keypoints: fit the hand's "
              "rotation too (regularised toward the network's, at most 30 deg), not only its position."),
    ParamSpec("tracking", True, "Hand tracks: stable ids, a side voted over frames, no hand twice in a "
              "frame, smoothed crop boxes, MANO shape averaged per track."),
    ParamSpec("side_switch_frames", 5, "Consecutive frames whose side label disagrees with a track's "
              "before its side changes.", range=(1, 100)),
    ParamSpec("filter", True, "One-Euro smoothing of each track's wrist position, hand rotation and "
              "joints on the image stamps (needs tracking)."),
    ParamSpec("filter_min_cutoff", 0.5, "Filter cutoff of a still hand, Hz (lower = steadier, laggier).",
              range=(0.01, 30.0)),
    ParamSpec("filter_beta", 15.0, "How fast the cutoff rises with the hand's speed, Hz per m/s (higher = "
              "less lag when moving).", range=(0.0, 1000.0)),
    ParamSpec("filter_d_cutoff", 1.0, "Cutoff of the filter's speed estimate, Hz.", range=(0.01, 30.0)),
    ParamSpec("hold_time", 0.1, "A tracked hand the detector misses is still published this many "
              "seconds, flagged held; 0 = never.", range=(0.0, 2.0)),
    ParamSpec("image_is_rectified", False, "The image is rectified (image_rect*): use CameraInfo P "
              "and no distortion instead of K and D.", read_only=True),
    ParamSpec("qos_reliability", "best_effort", "Image subscription reliability: best_effort "
              "(sensor data; accepts every publisher) or reliable (needs a reliable publisher; with Fast "
              "DDS, frames over ~0.5 MB get through best effort only with large socket buffers).",
              read_only=True,
              choices=("best_effort", "reliable")),
    ParamSpec("camera_info_sync", "latest", "Pairing of image and CameraInfo: latest (the newest "
              "CameraInfo of the frame; works with latched or slower CameraInfo) or exact (same "
              "stamp, from a short buffer).", choices=SYNC_POLICIES),
    ParamSpec("camera_info_any_frame", False, "Place an image with the newest CameraInfo even when "
              "its frame_id differs from the image's (for drivers whose ids disagree). Off: such frames are "
              "skipped with a warning naming both ids, so no hand is placed with another camera's intrinsics."),
    ParamSpec("camera_info_timeout", 5.0, "Warn (throttled, frames are still processed) when the "
              "CameraInfo used is older than the image by this many seconds; 0 = never.",
              range=(0.0, 86400.0)),
    ParamSpec("camera_info_wait", 0.1, "camera_info_sync exact: how long a frame may wait for its "
              "CameraInfo, seconds.", range=(0.0, 2.0)),
    ParamSpec("image_timeout", 5.0, "Warn when no image has arrived for this many seconds (naming "
              "whether the topic has a publisher).", range=(0.5, 86400.0)),
    ParamSpec("tf_prefix", "", "Prefix of the hand frames: <tf_prefix>left_hand/wrist, "
              "<tf_prefix>right_hand/wrist (e.g. 'robot1/').", check=_check_frame_prefix),
    ParamSpec("publish_tf", True, "Broadcast camera frame -> <tf_prefix><side>_hand/wrist on /tf "
              "(the best-scoring hand of each side)."),
    ParamSpec("publish_joint_frames", False, "Also broadcast the 21 joint frames "
              "<tf_prefix><side>_hand/joint_<k> (camera-aligned)."),
    ParamSpec("publish_vertices", True, "Fill Hand.vertices (778 x 3 MANO vertices) in HandArray."),
    ParamSpec("publish_markers", True, "Publish hands/markers (mesh + skeleton) while someone "
              "subscribes."),
    ParamSpec("publish_debug_image", True, "Publish hands/debug_image (rgb8 overlay) while someone "
              "subscribes."),
    ParamSpec("diagnostics_period", 1.0, "Period of the /diagnostics status, seconds.",
              read_only=True, range=(0.1, 60.0)),
)
PARAMETER_SPECS = {p.name: p for p in PARAMETERS}


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None:
        # bool is an int subclass: only real numbers get a range.
        if isinstance(spec.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]),
                                                         to_value=float(spec.range[1]), step=0.0)]
        elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
            d.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    return d


@dataclass(frozen=True)
class Options:
    """The runtime-changeable output switches; replaced as a whole, so the worker thread always
    reads a consistent set."""

    tf_prefix: str
    publish_tf: bool
    publish_joint_frames: bool
    publish_vertices: bool
    publish_markers: bool
    publish_debug_image: bool
    image_timeout: float
    camera_info_wait: float


_OPTION_NAMES = tuple(Options.__dataclass_fields__)
# Applied by the worker thread between two frames (they change the pipeline).
_PIPELINE_PARAMS = ("min_score", "max_hands", "rescale", "refine_translation", "fit_rotation", "tracking",
                    "side_switch_frames", "filter", "filter_min_cutoff", "filter_beta", "filter_d_cutoff",
                    "hold_time", "rois")


class _ForwardToRos(logging.Handler):
    """Routes the core's Python logging (e.g. "HaMeR model not loaded") into the node's ROS log."""

    def __init__(self, logger: Any) -> None:
        super().__init__(logging.INFO)
        self._ros = logger
        self.muted: set[str] = set()   # logger names whose records the node reports itself

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in self.muted:
            return
        try:
            text = f"[{record.name}] {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self._ros.error(text)
            elif record.levelno >= logging.WARNING:
                self._ros.warning(text)
            else:
                self._ros.info(text)
        except Exception:  # noqa: BLE001 -- logging must never take the node down
            pass


@dataclass
class _Stats:
    """Counters shared by the threads (guarded by HandMeshNode._stats_lock)."""

    received: int = 0
    processed: int = 0
    skipped: int = 0
    errors: int = 0
    last_skip: str = ""
    window_received: int = 0
    window_processed: int = 0
    window_skipped: int = 0
    window_e2e_ms: list[float] | None = None
    window_overhead_ms: list[float] | None = None
    window_pipeline_ms: list[float] | None = None
    window_wait_ms: list[float] | None = None
    window_stages: dict[str, float] | None = None

    def reset_window(self) -> None:
        self.window_received = self.window_processed = self.window_skipped = 0
        self.window_e2e_ms, self.window_overhead_ms, self.window_pipeline_ms = [], [], []
        self.window_wait_ms = []
        self.window_stages = {}


class HandMeshNode(Node):
    """See the module docstring. `pipeline`: inject a ready pipeline (tests, benchmarks) instead
    of building one from the parameters."""

    def __init__(self, pipeline: Any = None, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._log = self.get_logger()
        self._throttle = Throttle(5.0)
        self._stats_lock = threading.Lock()
        self._stats = _Stats()
        self._stats.reset_window()
        self._pending: dict[str, Any] = {}
        self._pending_lock = threading.Lock()
        self._stopping = threading.Event()
        self._py_log_handler: logging.Handler | None = None
        self._pipeline = None
        self._worker: threading.Thread | None = None
        try:
            self._setup(pipeline)
        except BaseException:
            self.close()
            self.destroy_node()
            raise

    # ----- setup ------------------------------------------------------------------------------

    def _setup(self, pipeline: Any) -> None:
        values = self._declare_parameters()
        self._values = values
        self._opts = Options(**{k: values[k] for k in _OPTION_NAMES})
        self._py_log_handler = _ForwardToRos(self._log)
        logging.getLogger("hamer_ros").addHandler(self._py_log_handler)
        logging.getLogger("hamer_ros").setLevel(logging.INFO)

        # The pipeline logs its model state; the node reports it once, with more context.
        self._py_log_handler.muted.add("hamer_ros.perception.pipeline")
        try:
            self._pipeline = pipeline if pipeline is not None else self._make_pipeline(values)
        finally:
            self._py_log_handler.muted.clear()
        self._model_error = self._report_model_state(values)

        self._image_topic = self.resolve_topic_name("image")
        self._info_topic = self.resolve_topic_name("camera_info")
        self._sync = CameraInfoSync(self._info_topic, values["camera_info_sync"], values["camera_info_timeout"],
                                    any_frame=values["camera_info_any_frame"])
        self._stamps = StampMonitor()
        self._mailbox: LatestMailbox[tuple[Image, float]] = LatestMailbox()
        self._rectified = values["image_is_rectified"]
        self._cdr_problem = cdr_self_check()
        if self._cdr_problem:
            self._log.warning(f"publishing markers and debug images as message objects (slower): "
                              f"{self._cdr_problem}")

        reliability = (ReliabilityPolicy.BEST_EFFORT if values["qos_reliability"] == "best_effort"
                       else ReliabilityPolicy.RELIABLE)
        self._warn_large_best_effort = (reliability == ReliabilityPolicy.BEST_EFFORT
                                        and "fastrtps" in rclpy.get_rmw_implementation_identifier())
        self._image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                                     durability=DurabilityPolicy.VOLATILE)
        self._image_sub = self.create_subscription(
            Image, "image", self._on_image, self._image_qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=lambda e: self._on_incompatible_qos(self._image_topic, self._image_qos, e)))
        # Created once a publisher appears (see _check_graph), with BEST_AVAILABLE policies, which
        # adopt the publisher's: a latched (reliable, transient-local) CameraInfo published before
        # this node started still arrives, and a best-effort one is still accepted.
        self._info_sub = None

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._hands_pub = self.create_publisher(HandArray, "hands", reliable)
        self._marker_pub = self.create_publisher(MarkerArray, "hands/markers",
                                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._debug_pub = self.create_publisher(Image, "hands/debug_image",
                                                QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        # As tf2_ros.TransformBroadcaster: /tf, reliable, depth 100.
        self._tf_pub = self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)

        self._start_mono = time.monotonic()
        self._last_image_mono: float | None = None
        self._last_diag_mono = time.monotonic()
        self.create_timer(values["diagnostics_period"], self._publish_diagnostics)
        self.create_timer(0.5, self._check_graph)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._worker = threading.Thread(target=self._run_worker, name="hand_mesh_inference", daemon=True)
        self._worker.start()
        self._log.info(
            f"ready: image={self._image_topic} camera_info={self._info_topic} detector={values['detector']} "
            f"model={'mesh' if self._pipeline.has_mesh else 'joints-only'} device={self._pipeline.device} "
            f"image QoS={values['qos_reliability']} camera_info_sync={values['camera_info_sync']}")

    def _declare_parameters(self) -> dict[str, Any]:
        values = {}
        for spec in PARAMETERS:
            try:
                p = self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except Exception as e:  # noqa: BLE001 -- rclpy raises several types; all mean "bad file"
                kind = type(spec.default).__name__
                raise StartupError(f"parameter '{spec.name}' (type {kind}, default {spec.default!r}): {e}. "
                                   f"Check the params file (a double needs a decimal point, e.g. 1.0)") from None
            problem = spec.validate(p.value)
            if problem:
                raise StartupError(f"parameter '{spec.name}': {problem}")
            values[spec.name] = p.value
        if values["detector"] == "fixed" and not parse_rois(values["rois"]):
            raise StartupError("detector 'fixed' needs rois, e.g. rois: \"[{box: [100, 120, 260, 300], "
                               "side: right}]\" (image pixels), or use detector:=mediapipe")
        return values

    def _make_pipeline(self, v: dict[str, Any]) -> Any:
        # Imported here, not at module level: torch takes seconds to import, and a Ctrl-C during a
        # module-level import would end in a traceback before main() can handle it.
        from ..perception.pipeline import HandPipeline, PipelineConfig

        device = v["device"]
        ckpt = v["checkpoint"]
        cfg = PipelineConfig(checkpoint=str(Path(ckpt).expanduser()) if ckpt else "",
                             mano=str(Path(v["mano"]).expanduser()) if v["mano"] else "",
                             device=device, precision=v["precision"], backend=v["backend"],
                             engine_cache=str(Path(v["engine_cache"]).expanduser()) if v["engine_cache"] else "",
                             detector=v["detector"],
                             rois=parse_rois(v["rois"]), max_hands=v["max_hands"], min_score=v["min_score"],
                             rescale=v["rescale"], refine=v["refine_translation"],
                             fit_rotation=v["fit_rotation"], tracking=v["tracking"],
                             side_switch_frames=v["side_switch_frames"], filter=v["filter"],
                             filter_min_cutoff=v["filter_min_cutoff"], filter_beta=v["filter_beta"],
                             filter_d_cutoff=v["filter_d_cutoff"], hold_time=v["hold_time"])
        try:
            return HandPipeline(cfg)
        except ImportError as e:
            raise StartupError(f"detector '{v['detector']}' cannot start: {e}. Or use detector:=fixed with rois "
                               f"(needs a checkpoint)") from None
        except (RuntimeError, ValueError, OSError) as e:
            raise StartupError(f"could not build the hand pipeline: {e}") from None

    def _report_model_state(self, v: dict[str, Any]) -> str:
        """Logs whether the mesh model is loaded and, if not, why and how to get it. Returns the
        reason ("" when loaded or when no checkpoint was configured)."""
        p = self._pipeline
        if p.has_mesh:
            self._log.info(f"HaMeR model loaded from '{v['checkpoint']}' (mesh mode) on {p.device}")
            return ""
        error = getattr(p, "model_error", "")
        ckpt = v["checkpoint"]
        if ckpt and not Path(ckpt).expanduser().is_file():
            # Say so directly: the loader may first complain about a file next to it.
            error = f"checkpoint file not found: looked for '{Path(ckpt).expanduser().absolute()}'"
        if error:
            self._log.error(f"HaMeR model NOT loaded (checkpoint: '{ckpt}', mano: '{v['mano']}'): {error}. "
                            f"Continuing joints-only (no mesh). {MODEL_HINT}")
        elif not ckpt:
            self._log.warning(f"no checkpoint configured: joints-only mode (no mesh). {MODEL_HINT}")
        if v["detector"] == "fixed":
            self._log.warning(
                "detector 'fixed' provides boxes only, and without a HaMeR model nothing places them in 3D: "
                "every HandArray will be empty. Load a checkpoint, or use detector:=mediapipe for joints-only")
        return error

    # ----- callbacks (executor thread) --------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        with self._stats_lock:
            self._stats.received += 1
            self._stats.window_received += 1
        self._last_image_mono = now
        self._mailbox.put((msg, now))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._sync.add(intrinsics_from_camera_info(msg, rectified=self._rectified))
        except Exception as e:  # noqa: BLE001 -- a malformed message must not stop the node
            self._warn("caminfo:malformed", f"ignoring a malformed CameraInfo on {self._info_topic}: {e}")
            return
        self._mailbox.notify()   # a frame may be waiting for exactly this one (exact policy)

    def _on_incompatible_qos(self, topic: str, ours: QoSProfile, event: Any) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        try:
            offered = sorted({f"reliability={i.qos_profile.reliability.name.lower()}, "
                              f"durability={i.qos_profile.durability.name.lower()}"
                              for i in self.get_publishers_info_by_topic(topic)})
        except Exception:  # noqa: BLE001
            offered = []
        self._warn(f"qos:{topic}", (
            f"a publisher on {topic} has incompatible QoS ({policy}); none of its messages will arrive. "
            f"Publishers offer: {'; '.join(offered) or 'unknown'}. This node requests "
            f"reliability={ours.reliability.name.lower()}, durability={ours.durability.name.lower()}. "
            "Fix: qos_reliability:=best_effort (accepts both), or make the publisher reliable"), period=10.0)

    def _check_graph(self) -> None:
        try:
            if self._info_sub is None and self.count_publishers(self._info_topic) > 0:
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                 reliability=ReliabilityPolicy.BEST_AVAILABLE,
                                 durability=DurabilityPolicy.BEST_AVAILABLE)
                self._info_sub = self.create_subscription(
                    CameraInfo, "camera_info", self._on_camera_info, qos,
                    event_callbacks=SubscriptionEventCallbacks(
                        incompatible_qos=lambda e: self._on_incompatible_qos(self._info_topic, qos, e)))
            idle = time.monotonic() - (self._last_image_mono or self._start_mono)
            timeout = self._opts.image_timeout
            if idle > timeout:
                n = self.count_publishers(self._image_topic)
                if n == 0:
                    self._warn("no_image_publisher", (
                        f"no publisher on {self._image_topic} after {idle:.0f} s -- remap image:= to your "
                        "camera's image topic (e.g. image:=/camera/color/image_raw)"), period=max(30.0, timeout))
                else:
                    self._warn("no_image", (
                        f"{n} publisher(s) on {self._image_topic} but no image for {idle:.0f} s -- is the "
                        f"camera streaming? A QoS mismatch would also be reported (this node requests "
                        f"reliability={self._image_qos.reliability.name.lower()})"), period=max(30.0, timeout))
        except Exception as e:  # noqa: BLE001 -- e.g. during shutdown
            if not self._stopping.is_set():
                self._warn("graph", f"graph check failed: {e!r}")

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Rejects a runtime change with the reason (rclpy already enforced type, range and
        read-only)."""
        for p in params:
            spec = PARAMETER_SPECS.get(p.name)
            if spec is None:
                continue
            problem = spec.validate(p.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        changed = {p.name: p.value for p in params if p.name in PARAMETER_SPECS}
        self._values.update(changed)
        opts = {k: v for k, v in changed.items() if k in _OPTION_NAMES}
        if opts:
            self._opts = replace(self._opts, **opts)
        if "camera_info_sync" in changed:
            self._sync.policy = changed["camera_info_sync"]
        if "camera_info_timeout" in changed:
            self._sync.stale_after = changed["camera_info_timeout"]
        if "camera_info_any_frame" in changed:
            self._sync.any_frame = changed["camera_info_any_frame"]
        pipe = {k: v for k, v in changed.items() if k in _PIPELINE_PARAMS}
        if "rois" in pipe and self._values["detector"] != "fixed":
            self._log.warning("rois changed, but detector is not 'fixed': no effect")
            del pipe["rois"]
        if pipe:
            with self._pending_lock:
                self._pending.update(pipe)
        for k, v in changed.items():
            self._log.info(f"parameter {k} = {v!r}")

    # ----- worker thread ----------------------------------------------------------------------

    def _apply_pending(self) -> None:
        """Pipeline changes, applied between frames on the thread that runs the pipeline."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        names = {"refine_translation": "refine"}
        changes = {names.get(k, k): parse_rois(v) if k == "rois" else v for k, v in pending.items()}
        try:
            self._pipeline.reconfigure(**changes)
        except Exception as e:  # noqa: BLE001 -- e.g. MediaPipe failing to restart
            self._log.error(f"could not apply {sorted(pending)} ({e}); keeping the previous settings")

    def _run_worker(self) -> None:
        while not self._stopping.is_set():
            item = self._mailbox.get()
            if item is None:
                break
            try:
                self._apply_pending()
                self._process(*item)
            except Exception as e:  # noqa: BLE001 -- one bad frame must never end the node
                if self._stopping.is_set():
                    break
                with self._stats_lock:
                    self._stats.errors += 1
                    self._stats.last_skip = f"error: {e!r}"
                self._warn(f"error:{type(e).__name__}", (
                    f"frame failed ({type(e).__name__}: {e}); continuing with the next one\n"
                    f"{traceback.format_exc(limit=4)}"))

    def _skip(self, reason: str) -> None:
        with self._stats_lock:
            self._stats.skipped += 1
            self._stats.window_skipped += 1
            self._stats.last_skip = reason

    def _process(self, msg: Image, received_mono: float) -> dict[str, float] | None:
        """One frame: convert, pair with intrinsics, infer, publish. Returns the time split (ms)."""
        t0 = time.perf_counter()
        header = msg.header
        stamp_ns = stamp_to_ns(header.stamp)
        prev = self._stamps.update(stamp_ns)
        if prev is not None:
            self._warn("backwards", (
                f"image stamps went backwards ({format_stamp(prev)} -> {format_stamp(stamp_ns)}), e.g. a "
                "looping bag or a restarted driver: hand tracks, filters and the detector's tracking start "
                "afresh; frames are still processed"))
        try:
            rgb = image_to_rgb(msg)
        except ImageConversionError as e:
            self._skip(str(e))
            self._warn(f"image:{e.key}", f"skipping image {format_stamp(stamp_ns)} on {self._image_topic}: {e}")
            return None
        height, width = rgb.shape[:2]
        if self._warn_large_best_effort and len(msg.data) > 500_000:
            self._warn_large_best_effort = False
            self._log.warning(
                f"images of {len(msg.data) // 1024} KiB arrive over a best-effort subscription: Fast DDS "
                "sends samples above its ~0.5 MB shared-memory segment as UDP fragments, and with best effort "
                "one lost fragment loses the frame. If 'input rate' in /diagnostics is below the camera's, "
                "set qos_reliability:=reliable (the camera must publish reliable) or enlarge the socket "
                "buffers (sysctl net.core.rmem_max / rmem_default)")
        match = self._sync.match(stamp_ns, header.frame_id, width, height, self._info_topic_has_publishers())
        if match.intrinsics is None and self._sync.policy == "exact" and self._opts.camera_info_wait > 0:
            self._mailbox.wait(lambda: self._sync.has_exact(stamp_ns, header.frame_id), self._opts.camera_info_wait)
            match = self._sync.match(stamp_ns, header.frame_id, width, height)
        for p in match.problems:
            cause = p.key.split(":")[0]
            self._warn(f"caminfo:{p.key}", p.text, period=30.0 if cause in ("stale", "distortion") else 5.0)
        if not match.usable:
            self._skip(next((p.text for p in match.problems if p.skip), "no CameraInfo"))
            return None
        t1 = time.perf_counter()
        hands = self._pipeline(rgb, match.intrinsics.K, match.intrinsics.D, stamp=stamp_ns * 1e-9)
        t2 = time.perf_counter()
        self._publish(header, rgb, hands, match.intrinsics)
        t3 = time.perf_counter()
        times = {"convert": (t1 - t0) * 1e3, "pipeline": (t2 - t1) * 1e3, "publish": (t3 - t2) * 1e3,
                 # arrival to start of processing: how long the frame sat in the mailbox
                 "wait": max(0.0, (time.monotonic() - received_mono) * 1e3 - (t3 - t0) * 1e3)}
        self._record(header, times)
        return times

    def _info_topic_has_publishers(self) -> bool | None:
        try:
            return self.count_publishers(self._info_topic) > 0
        except Exception:  # noqa: BLE001
            return None

    def _publish(self, header: Header, rgb: Any, hands: list, camera: Any) -> None:
        o = self._opts
        self._hands_pub.publish(hands_to_msg(header, hands, o.publish_vertices))
        sec, nsec, frame = header.stamp.sec, header.stamp.nanosec, header.frame_id
        if o.publish_tf and hands:
            if frame:
                transforms = hand_transforms(header, hands, o.tf_prefix, o.publish_joint_frames)
                if transforms:
                    self._tf_pub.publish(TFMessage(transforms=transforms))
            else:
                self._warn("empty_frame_id", "the image has an empty header.frame_id: no TF published (set the "
                           "camera driver's frame id, e.g. camera_color_optical_frame)")
        if o.publish_markers and self._marker_pub.get_subscription_count() > 0:
            specs = marker_specs(hands, with_mesh=bool(self._pipeline.has_mesh))
            self._marker_pub.publish(marker_array_msg(header, specs) if self._cdr_problem
                                     else marker_array_cdr(sec, nsec, frame, specs))
        if o.publish_debug_image and self._debug_pub.get_subscription_count() > 0:
            overlay = draw_hands(rgb, hands, camera.K, camera.D)
            self._debug_pub.publish(image_msg(header, overlay) if self._cdr_problem
                                    else image_cdr(sec, nsec, frame, overlay))

    def _record(self, header: Header, times: dict[str, float]) -> None:
        e2e = (self.get_clock().now().nanoseconds - stamp_to_ns(header.stamp)) / 1e6
        stages = self._pipeline.last_times
        with self._stats_lock:
            s = self._stats
            s.processed += 1
            s.window_processed += 1
            s.window_e2e_ms.append(e2e)
            s.window_pipeline_ms.append(times["pipeline"])
            s.window_overhead_ms.append(times["convert"] + times["publish"])
            s.window_wait_ms.append(times["wait"])
            for k in ("detect", "crop", "forward", "mano", "camera"):
                s.window_stages[k] = s.window_stages.get(k, 0.0) + getattr(stages, k)
            for k, v in stages.extra.items():
                s.window_stages[k] = s.window_stages.get(k, 0.0) + v

    # ----- diagnostics ------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        try:
            self._diag_pub.publish(self.diagnostics())
        except Exception as e:  # noqa: BLE001
            if not self._stopping.is_set():
                self._warn("diagnostics", f"diagnostics failed: {e!r}")

    def diagnostics(self) -> DiagnosticArray:
        now_mono = time.monotonic()
        period = max(1e-3, now_mono - self._last_diag_mono)
        self._last_diag_mono = now_mono
        with self._stats_lock:
            s = self._stats
            total = dict(received=s.received, processed=s.processed, skipped=s.skipped, errors=s.errors,
                         last_skip=s.last_skip)
            win_recv, win_proc, win_skip = s.window_received, s.window_processed, s.window_skipped
            e2e, overhead, pipe, stages = s.window_e2e_ms, s.window_overhead_ms, s.window_pipeline_ms, s.window_stages
            wait = s.window_wait_ms
            s.reset_window()
        p = self._pipeline
        dropped = self._mailbox.dropped

        def mean(xs: list[float]) -> float:
            return sum(xs) / len(xs) if xs else 0.0

        problems = []
        level = DiagnosticStatus.OK
        idle = now_mono - (self._last_image_mono or self._start_mono)
        if self._last_image_mono is None or idle > self._opts.image_timeout:
            problems.append(f"no images on {self._image_topic} for {idle:.0f} s")
        if not p.has_mesh:
            err = self._model_error or "no checkpoint configured"
            problems.append(f"joints-only (no HaMeR model: {err})")
        if win_skip and not win_proc:
            problems.append(f"all frames skipped: {total['last_skip']}")
        if problems:
            level = DiagnosticStatus.WARN
        message = "; ".join(problems) if problems else f"processing at {win_proc / period:.1f} Hz"
        kv = [
            ("input rate [Hz]", f"{win_recv / period:.2f}"),
            ("processing rate [Hz]", f"{win_proc / period:.2f}"),
            ("frames received", total["received"]),
            ("frames processed", total["processed"]),
            ("frames dropped", dropped),
            ("frames skipped", total["skipped"]),
            ("frame errors", total["errors"]),
            ("last skip reason", total["last_skip"]),
            ("end-to-end latency mean [ms]", f"{mean(e2e):.1f}"),
            ("end-to-end latency max [ms]", f"{max(e2e, default=0.0):.1f}"),
            ("pipeline [ms]", f"{mean(pipe):.2f}"),
            ("node overhead [ms]", f"{mean(overhead):.2f}"),
            ("mailbox wait [ms]", f"{mean(wait):.2f}"),
        ]
        kv += [(f"stage {k} [ms]", f"{v / max(1, win_proc):.2f}") for k, v in stages.items()]
        kv += [
            ("device", str(p.device)),
            ("backend", p.backend),
            ("precision", p.engine.precision if p.engine is not None else "-"),
            ("model", "mesh" if p.has_mesh else "joints-only"),
            ("model error", self._model_error),
            ("detector", self._values["detector"]),
            ("camera infos received", self._sync.received),
        ]
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: hand mesh",
                                  message=message, hardware_id=str(getattr(p, "device", "")),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in kv])
        out = DiagnosticArray(status=[status])
        out.header.stamp = self.get_clock().now().to_msg()
        return out

    # ----- misc -------------------------------------------------------------------------------

    def _warn(self, key: str, text: str, period: float | None = None) -> None:
        ok, held = self._throttle.ready(key, period)
        if ok:
            self._log.warning(text + (f" [{held} similar message(s) suppressed]" if held else ""))

    @property
    def pipeline(self) -> Any:
        return self._pipeline

    def close(self) -> None:
        """Stops the worker and releases the pipeline (idempotent)."""
        self._stopping.set()
        mailbox = getattr(self, "_mailbox", None)
        if mailbox is not None:
            mailbox.close()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)
        if self._pipeline is not None and hasattr(self._pipeline, "close"):
            try:
                self._pipeline.close()
            except Exception:  # noqa: BLE001
                pass
        if self._py_log_handler is not None:
            logging.getLogger("hamer_ros").removeHandler(self._py_log_handler)
            self._py_log_handler = None


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> None:
    rc = 0
    node = None
    # rclpy's own SIGTERM handler shuts the context down and then chains to the previous handler,
    # which by default kills the process (exit 143, no cleanup). A Python handler in its place
    # turns SIGTERM into the same clean stop as Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        try:
            rclpy.init(args=args)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 -- rcl's argument parser raises RCLError
            raise StartupError(
                f"invalid ROS arguments ({e}). A string parameter that looks like YAML needs two levels of "
                "quotes on the command line, e.g. -p 'rois:=\"[{box: [100, 120, 260, 300], side: right}]\"'"
            ) from None
        node = HandMeshNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except StartupError as e:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {e}")
        rc = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass   # Ctrl-C / SIGTERM: a normal stop
    finally:
        try:
            if node is not None:
                node.close()
                node.destroy_node()
        except (KeyboardInterrupt, Exception):  # noqa: BLE001 -- shutting down anyway
            pass
        rclpy.try_shutdown()
    sys.exit(rc)


if __name__ == "__main__":
    main()
