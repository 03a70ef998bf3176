"""hand_mesh_node: a thin ROS 2 shell around perception.HandPipeline, as a managed (lifecycle) node.

Lifecycle: the constructor only declares parameters and the `~/enable` service. configure builds
the pipeline (loads and self-checks the model and engine), the publishers and the timers;
activate starts the worker threads and the image subscription; deactivate stops them (joining
the threads) without unloading; cleanup releases the model and GPU memory. With `autostart`
(default) main() takes the node to active by itself, so it runs like a plain node.

Threads: the executor thread runs the callbacks, which only store things (the newest image into
a one-slot mailbox, CameraInfos into CameraInfoSync, depth images into DepthSync) and run timers,
services and transitions;
one inference thread converts, infers and publishes HandArray, TF and markers; one visualisation
thread draws, scales, encodes and publishes the debug images, so a viewer never delays the
robot's outputs. A frame that arrives while the model is busy replaces the waiting one and is
counted as dropped: the output follows the camera with at most one frame of delay, whatever the
model's speed, and nothing queues. The per-frame path asks the ROS graph nothing: who subscribes
is cached by a timer.

Every output carries the input image's header (stamp and frame id) exactly.
"""
from __future__ import annotations

import difflib
import gc
import logging
import os
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
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from hamer_ros_msgs.msg import HandArray

from ..perception.overlay import draw_hands
from ..weights import WEIGHTS_HINT
from .compat import SubscriptionEventCallbacks, matching_qos
from .convert import (cdr_self_check, compressed_image_msg, hand_transforms, hands_to_msg, image_cdr,
                      image_msg, marker_array_cdr, marker_array_msg, marker_specs, scale_image, tf_hands)
from .dds_profile import PROFILE_ENV, PROFILE_FILE, profile_path, use_shipped_profile
from .image import ImageConversionError, depth_image_to_metres, image_to_rgb
from .parameters import (OPTION_NAMES, PARAMETER_SPECS, PARAMETERS, PIPELINE_PARAMS, ROS_OWN_PARAMETERS, Options,
                         dependent_parameter_problem, descriptor, frame_prefix, parse_rois)
from .sync import (CameraInfoSync, DepthFrame, DepthSync, LatestMailbox, Problem, StampMonitor,
                   Throttle, format_stamp, intrinsics_from_camera_info, stamp_to_ns)

NODE_NAME = "hand_mesh_node"

MODEL_HINT = "To get meshes set {checkpoint}. " + WEIGHTS_HINT

# Set by launch/hands.launch.py and `scripts/run.sh node`, which both take launch-style arguments
# (image_topic:=..., checkpoint:=...): the node's hints then name those instead of --ros-args.
STARTED_BY_ENV = "HAMER_ROS_ARGS"
# The compressed debug image, named and formatted as image_transport's compressed plugin does.
COMPRESSED_SUFFIX = "/compressed"


class ArgStyle:
    """How the user passes settings to this process, for hints: launch-style or --ros-args."""

    def __init__(self, launch: bool) -> None:
        self.launch = launch

    def remap(self, name: str, example: str) -> str:
        return f"{name}_topic:={example}" if self.launch else f"-r {name}:={example}"

    def remap_hint(self, name: str, example: str) -> str:
        """A clause that tells how to point the input `name` elsewhere, in the user's syntax."""
        return f"set {self.remap(name, example)}" if self.launch else f"remap {name}:={example}"

    def param(self, name: str, value: str) -> str:
        return f"{name}:={value}" if self.launch else f"-p {name}:={value}"

    @classmethod
    def from_env(cls) -> ArgStyle:
        return cls(os.environ.get(STARTED_BY_ENV, "") == "launch")


class StartupError(RuntimeError):
    """A configuration the node cannot run with; main() logs it (no traceback) and exits 1."""


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
    # stamps of recently received frames (arrival order), to tell the camera's rate from ours
    recent_stamps: list[int] | None = None
    # use_depth: frames given their depth image, frames placed from RGB alone for want of one
    with_depth: int = 0
    depth_fallbacks: int = 0
    hands_on_depth: int = 0
    last_depth_problem: str = ""
    window_with_depth: int = 0
    window_depth_fallbacks: int = 0

    def reset_window(self) -> None:
        self.window_received = self.window_processed = self.window_skipped = 0
        self.window_with_depth = self.window_depth_fallbacks = 0
        self.window_e2e_ms, self.window_overhead_ms, self.window_pipeline_ms = [], [], []
        self.window_wait_ms = []
        self.window_stages = {}


SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE

# How long a transition waits for a frame in progress: the executor (services, timers, other
# transitions) waits with it. A thread still running after that keeps what it uses: nothing is
# closed under it; the pipeline it holds is closed when it ends (a ViT-H frame on a slow CPU
# takes seconds), and a new worker waits for it before using the pipeline.
JOIN_TIMEOUT_S = 1.0
# Diagnostics warn when processing stays under this fraction of the input rate for this long.
SLOW_FRACTION = 0.5
SLOW_FOR_S = 5.0
# Diagnostics compare the input rate with the camera's (from the stamps): below this fraction,
# frames are being lost before they reach the node.
MIN_INPUT_FRACTION = 0.5
RATE_SAMPLES = 30
DEBUG_THREAD_NICENESS = 10


class HandMeshNode(LifecycleNode):
    """See the module docstring. `pipeline`: inject a ready pipeline (tests, benchmarks) instead
    of building one from the parameters at configure. Bad parameter values raise StartupError
    here; a failed configure is reported by `start()` (and, for a lifecycle manager, as FAILURE)."""

    def __init__(self, pipeline: Any = None, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._log = self.get_logger()
        self._throttle = Throttle(5.0)
        self._args = ArgStyle.from_env()
        self._injected_pipeline = pipeline
        self._stats_lock = threading.Lock()
        self._stats = _Stats()
        self._stats.reset_window()
        self._pending: dict[str, Any] = {}
        self._pending_lock = threading.Lock()
        self._stopping = threading.Event()
        self._pipeline: Any = None
        self._threads: list[threading.Thread] = []
        self._stuck: list[threading.Thread] = []     # stopped but still finishing a frame
        self._orphan: Any = None                     # a pipeline released while a thread still used it
        self._orphan_lock = threading.Lock()
        self._tf_tracks: dict[str, int] = {}         # per side, the track its TF frame shows
        self._slow_since: float | None = None        # since when processing is under half the input rate
        self._nonfinite_at_last_diag = 0
        self._mailbox: LatestMailbox[tuple[Image, float]] = LatestMailbox()
        self._debug_box: LatestMailbox[tuple] = LatestMailbox()
        self._dropped_before = 0
        self._active = False
        self._enabled = True
        self._configure_error = ""
        self._autostarting = False
        self.finalized = False
        self._image_sub = self._info_sub = self._depth_sub = None
        self._info_qos: QoSProfile | None = None
        self._depth_sync: DepthSync | None = None
        self._pubs: list[Any] = []
        self._timers: list[Any] = []
        # what the per-frame path needs to know about the graph, refreshed by _check_graph
        self._info_has_publishers: bool | None = None
        self._depth_has_publishers: bool | None = None
        self._want_markers = self._want_debug = self._want_compressed = False
        self._py_log_handler = _ForwardToRos(self._log)
        logging.getLogger("hamer_ros").addHandler(self._py_log_handler)
        logging.getLogger("hamer_ros").setLevel(logging.INFO)
        try:
            self._values = self._declare_parameters()
        except BaseException:
            self.close()
            self.destroy_node()
            raise
        self._opts = Options(**{k: self._values[k] for k in OPTION_NAMES})
        self._prefix = frame_prefix(self._values["tf_prefix"], self.get_namespace())
        self._image_topic = self.resolve_topic_name("image")
        self._info_topic = self.resolve_topic_name("camera_info")
        self._depth_topic = self.resolve_topic_name("depth")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_service(SetBool, "~/enable", self._on_enable)

    @property
    def autostart(self) -> bool:
        return bool(self._values["autostart"])

    def start(self) -> None:
        """configure + activate, as a lifecycle manager would (autostart, in-process users).
        Raises StartupError with the reason when a transition fails."""
        self._autostarting = True
        try:
            if self.trigger_configure() != SUCCESS:
                raise StartupError(self._configure_error or "configure failed")
            if self.trigger_activate() != SUCCESS:
                raise StartupError("activate failed")
        finally:
            self._autostarting = False

    # ----- lifecycle transitions (executor thread) --------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._configure_error = ""
        try:
            self._configure()
        except Exception as e:  # noqa: BLE001 -- StartupError, or anything a model load raises
            self._configure_error = str(e) if isinstance(e, StartupError) else f"{type(e).__name__}: {e}"
            if not self._autostarting:   # start() raises it, and main() logs it as fatal
                self._log.error(f"configure failed: {self._configure_error}")
            self._release()
            return FAILURE
        self._log.info(
            f"configured: image={self._image_topic} camera_info={self._info_topic} "
            f"detector={self._values['detector']} model={'mesh' if self._pipeline.has_mesh else 'joints-only'} "
            f"device={self._pipeline.device} backend={self._pipeline.backend} "
            f"image QoS={self._values['qos_reliability']} camera_info_sync={self._values['camera_info_sync']} "
            f"depth={self._depth_topic if self._values['use_depth'] else 'off'}")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stopping = threading.Event()   # a stopped thread that still finishes keeps its own, set
        self._mailbox, self._debug_box = LatestMailbox(), LatestMailbox()
        self._threads = [threading.Thread(target=self._run_thread, args=(loop,), name=name, daemon=True)
                         for loop, name in ((self._worker_loop, "hand_mesh_inference"),
                                            (self._debug_loop, "hand_mesh_debug_image"))]
        for t in self._threads:
            t.start()
        self._refresh_subscribers()
        ret = super().on_activate(state)      # enables the lifecycle publishers
        self._active = True
        self._idle_since = time.monotonic()
        self._update_image_subscription()
        self._log.info("active" + ("" if self._enabled else " (inference paused: ~/enable is false)"))
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._log.info("inactive (model kept loaded)")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._log.info("unconfigured (model released)")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._release()
        self.finalized = True
        self._log.info("shut down (finalized)")
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._release()
        return SUCCESS    # back to unconfigured: a manager may configure again

    def _stop(self) -> None:
        """No subscription, threads joined: nothing runs that uses what a later step releases."""
        self._active = False
        self._update_image_subscription()
        self._stop_threads()

    # ----- configure / release ----------------------------------------------------------------

    def _configure(self) -> None:
        values = self._values
        with self._pending_lock:
            self._pending = {}     # the pipeline is built from the current values
        # The pipeline logs its model state; the node reports it once, with more context.
        self._py_log_handler.muted.add("hamer_ros.perception.pipeline")
        try:
            self._pipeline = (self._injected_pipeline if self._injected_pipeline is not None
                              else self._make_pipeline(values))
        finally:
            self._py_log_handler.muted.clear()
        self._report_model_state(values)
        if self._pipeline.has_mesh and getattr(self._pipeline.engine, "fallback_reason", ""):
            self._log.warning(f"backend '{values['backend']}' not used, running '{self._pipeline.backend}': "
                              f"{self._pipeline.engine.fallback_reason}")

        self._sync = CameraInfoSync(self._info_topic, values["camera_info_sync"], values["camera_info_timeout"],
                                    any_frame=values["camera_info_any_frame"])
        self._depth_sync = DepthSync(
            self._depth_topic, values["depth_tolerance"],
            remap_hint=self._args.remap_hint("depth", "/camera/aligned_depth_to_color/image_raw"))
        self._stamps = StampMonitor()
        self._rectified = values["image_is_rectified"]
        self._cdr_problem = cdr_self_check()
        if self._cdr_problem:
            self._log.warning(f"publishing markers and debug images as message objects (slower): "
                              f"{self._cdr_problem}")
        with self._stats_lock:
            self._stats = _Stats()
            self._stats.reset_window()
        self._dropped_before = 0

        reliability = (ReliabilityPolicy.BEST_EFFORT if values["qos_reliability"] == "best_effort"
                       else ReliabilityPolicy.RELIABLE)
        # Fast DDS loses large best-effort samples without a profile that enlarges its shared
        # memory segment (config/fastdds_large_images.xml); say so once if none is set.
        self._warn_large_best_effort = (reliability == ReliabilityPolicy.BEST_EFFORT
                                        and "fastrtps" in rclpy.get_rmw_implementation_identifier()
                                        and not any(os.environ.get(k) for k in PROFILE_ENV))
        self._image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                                     durability=DurabilityPolicy.VOLATILE)

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        # Visualisation is best effort, keep last 1: a slow viewer (or one far away) never makes
        # the node wait for acknowledgements or resend megabytes while the robot's outputs queue.
        viewer = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        lifecycle_pub = self.create_lifecycle_publisher
        self._hands_pub = lifecycle_pub(HandArray, "hands", reliable)
        self._marker_pub = lifecycle_pub(MarkerArray, "hands/markers",
                                         QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._debug_pub = lifecycle_pub(Image, "hands/debug_image", viewer)
        self._compressed_pub = lifecycle_pub(CompressedImage, "hands/debug_image" + COMPRESSED_SUFFIX, viewer)
        # As tf2_ros.TransformBroadcaster: /tf, reliable, depth 100.
        self._tf_pub = lifecycle_pub(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        # A plain publisher: a robot monitor sees the node while it is inactive or paused, too.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self._pubs = [self._hands_pub, self._marker_pub, self._debug_pub, self._compressed_pub, self._tf_pub,
                      self._diag_pub]

        self._start_mono = self._idle_since = self._last_diag_mono = time.monotonic()
        self._last_image_mono: float | None = None
        self._timers = [self.create_timer(values["diagnostics_period"], self._publish_diagnostics),
                        self.create_timer(0.5, self._check_graph)]
        self._check_graph()

    def _release(self) -> None:
        """Undoes configure: timers, subscriptions, publishers, and the model (GPU memory too).
        The threads are stopped before (deactivate); one that is stuck keeps its pipeline."""
        for t in self._timers:
            self.destroy_timer(t)
        self._timers = []
        if self._info_sub is not None:
            self.destroy_subscription(self._info_sub)
            self._info_sub = None
        for p in self._pubs:
            if p is self._diag_pub:
                self.destroy_publisher(p)
            else:
                self.destroy_lifecycle_publisher(p)
        self._pubs = []
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is None:
            return
        with self._orphan_lock:
            if self._threads_stuck:
                self._orphan = pipeline     # closed by the last stuck thread as it ends
                return
        self._close_pipeline(pipeline)

    @property
    def _threads_stuck(self) -> bool:
        return any(t.is_alive() and t is not threading.current_thread() for t in self._stuck)

    def _thread_ended(self) -> None:
        """A worker's last act: the last of the stuck threads closes the pipeline released under it."""
        with self._orphan_lock:
            if self._threads_stuck or self._orphan is None:
                return
            pipeline, self._orphan = self._orphan, None
        self._log.info("a stopped thread finished its frame; closing the pipeline it kept")
        self._close_pipeline(pipeline)

    def _close_pipeline(self, pipeline: Any) -> None:
        if hasattr(pipeline, "close"):
            try:
                pipeline.close()
            except Exception as e:  # noqa: BLE001 -- releasing anyway
                self._log.warning(f"closing the pipeline failed: {e!r}")
        if pipeline is not self._injected_pipeline:
            del pipeline
            gc.collect()
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _stop_threads(self) -> None:
        """Stops and joins the inference and debug-image threads, so nothing they use is closed
        or destroyed under them."""
        self._stopping.set()
        self._mailbox.close()
        self._debug_box.close()
        for t in self._threads:
            if t is threading.current_thread():
                continue
            t.join(timeout=JOIN_TIMEOUT_S)
            if t.is_alive():
                self._stuck.append(t)
                self._log.warning(f"thread {t.name} still finishes a frame after {JOIN_TIMEOUT_S:.0f} s; not "
                                  "waiting for it (what it uses is kept until it ends)")
        self._stuck = [t for t in self._stuck if t.is_alive()]
        self._threads = []
        self._dropped_before += self._mailbox.dropped
        self._mailbox = LatestMailbox()     # a fresh, open one: counters read it until the next activate

    def _update_image_subscription(self) -> None:
        """The image subscription exists exactly while the node is active and enabled (a paused
        node does not even receive the images)."""
        want = self._active and self._enabled
        if want and self._image_sub is None:
            self._idle_since = time.monotonic()
            self._last_image_mono = None
        self._image_sub = self._image_subscription(self._image_sub, want, "image", self._image_topic, self._on_image)
        had_depth = self._depth_sub is not None
        self._depth_sub = self._image_subscription(self._depth_sub, want and bool(self._values["use_depth"]),
                                                   "depth", self._depth_topic, self._on_depth)
        if had_depth and self._depth_sub is None and self._depth_sync is not None:
            self._depth_sync.reset()     # images of a paused stream would only hold memory

    def _image_subscription(self, sub: Any, want: bool, name: str, topic: str,
                            callback: Callable[[Image], None]) -> Any:
        """`sub`, an Image subscription to `name` (resolved: `topic`), created or destroyed so that
        it exists exactly when wanted."""
        if want and sub is None:
            return self.create_subscription(
                Image, name, callback, self._image_qos,
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=lambda e: self._on_incompatible_qos(topic, self._image_qos, e)))
        if not want and sub is not None:
            self.destroy_subscription(sub)
            return None
        return sub

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        changed = self._enabled != request.data
        self._enabled = bool(request.data)
        self._update_image_subscription()
        state = "active" if self._active else "not active (applies once activated)"
        response.success = True
        response.message = f"inference {'enabled' if self._enabled else 'paused'}; node {state}"
        if changed:
            self._log.info(response.message)
        return response

    # ----- parameters -------------------------------------------------------------------------

    def _declare_parameters(self) -> dict[str, Any]:
        values = {}
        for spec in PARAMETERS:
            try:
                p = self.declare_parameter(spec.name, spec.default, descriptor(spec))
            except Exception as e:  # noqa: BLE001 -- rclpy raises several types; all mean "bad file"
                kind = type(spec.default).__name__
                raise StartupError(f"parameter '{spec.name}' (type {kind}, default {spec.default!r}): {e}. "
                                   f"Check the params file (a double needs a decimal point, e.g. 1.0)") from None
            problem = spec.validate(p.value)
            if problem:
                raise StartupError(f"parameter '{spec.name}': {problem}")
            values[spec.name] = p.value
        # rclpy keeps the overrides it was given in this attribute (Humble and Jazzy alike)
        overrides = set(getattr(self, "_parameter_overrides", {}))
        self._explicit = overrides & PARAMETER_SPECS.keys()
        problem = dependent_parameter_problem(values, self._explicit, starting=True)
        if problem:
            raise StartupError(problem)
        self._warn_undeclared(overrides - PARAMETER_SPECS.keys())
        return values

    def _warn_undeclared(self, names: set[str]) -> None:
        """One warning per parameter given to this node (params file, -p) that it does not have:
        a typo or a renamed parameter would otherwise be ignored without a word."""
        for name in sorted(names):
            if name in ROS_OWN_PARAMETERS or name.startswith("qos_overrides."):
                continue
            close = difflib.get_close_matches(name, list(PARAMETER_SPECS), n=1)
            self._log.warning(f"parameter '{name}' is not a parameter of this node and is ignored"
                              + (f"; did you mean '{close[0]}'?" if close else "")
                              + " (the README lists them all)")

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

    def _report_model_state(self, v: dict[str, Any]) -> None:
        """Logs whether the mesh model is loaded and, without a checkpoint, how to get one. Raises
        StartupError when a configured checkpoint could not be loaded."""
        p = self._pipeline
        if p.has_mesh:
            self._log.info(f"HaMeR model loaded from '{v['checkpoint']}' (mesh mode) on {p.device}")
            return ""
        error = getattr(p, "model_error", "")
        ckpt = v["checkpoint"]
        if ckpt and not Path(ckpt).expanduser().is_file():
            # Say so directly: the loader may first complain about a file next to it.
            error = f"checkpoint file not found: looked for '{Path(ckpt).expanduser().absolute()}'"
        hint = MODEL_HINT.format(checkpoint=self._args.param("checkpoint", "<...>/hamer_ckpts/checkpoints/hamer.ckpt"),
                                 mano=self._args.param("mano", "<...>/MANO_RIGHT.pkl"))
        if error:
            # As the CLI: a checkpoint that was asked for and cannot be used is a configuration
            # error, not a quieter mode (joints-only is for no checkpoint at all).
            raise StartupError(f"HaMeR model NOT loaded (checkpoint: '{ckpt}', mano: '{v['mano']}'): {error}. "
                               f"Fix the path, or leave checkpoint empty for the joints-only mode. {hint}")
        if not ckpt:
            self._log.info(f"no checkpoint configured: joints-only mode (no mesh). {hint}")
        if v["detector"] == "fixed":
            self._log.warning(
                "detector 'fixed' provides boxes only, and without a HaMeR model nothing places them in 3D: "
                "every HandArray will be empty. Load a checkpoint, or use detector:=mediapipe for joints-only")

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Rejects a runtime change with the reason, or applies it. rclpy has already enforced
        type, range and read-only, and nothing rejects the change after this callback (see
        compat.py), so applying here is applying what is set -- on Humble as on Jazzy."""
        for p in params:
            spec = PARAMETER_SPECS.get(p.name)
            if spec is None:
                continue
            problem = spec.validate(p.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        changes = {p.name: p.value for p in params if p.name in PARAMETER_SPECS}
        problem = dependent_parameter_problem({**self._values, **changes}, self._explicit | changes.keys())
        if problem:
            return SetParametersResult(successful=False, reason=problem)
        self._apply_parameters(changes)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changed: dict[str, Any]) -> None:
        """Puts validated changes (name -> value, declared names only) into effect."""
        self._explicit |= changed.keys()
        self._values.update(changed)
        opts = {k: v for k, v in changed.items() if k in OPTION_NAMES}
        if opts:
            self._opts = replace(self._opts, **opts)
        if "tf_prefix" in changed:
            self._prefix = frame_prefix(changed["tf_prefix"], self.get_namespace())
        sync = getattr(self, "_sync", None)
        if sync is not None and "camera_info_sync" in changed:
            sync.policy = changed["camera_info_sync"]
        if sync is not None and "camera_info_timeout" in changed:
            sync.stale_after = changed["camera_info_timeout"]
        if sync is not None and "camera_info_any_frame" in changed:
            sync.any_frame = changed["camera_info_any_frame"]
        if self._depth_sync is not None and "depth_tolerance" in changed:
            self._depth_sync.tolerance = changed["depth_tolerance"]
        if "use_depth" in changed:
            self._update_image_subscription()
        pipe = {k: v for k, v in changed.items() if k in PIPELINE_PARAMS}
        if "rois" in pipe and self._values["detector"] != "fixed":
            self._log.warning("rois changed, but detector is not 'fixed': no effect")
            del pipe["rois"]
        if pipe and self._pipeline is not None:
            with self._pending_lock:
                self._pending.update(pipe)
        for k, v in changed.items():
            self._log.info(f"parameter {k} = {v!r}")

    # ----- callbacks (executor thread) --------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        stamp = stamp_to_ns(msg.header.stamp)
        with self._stats_lock:
            s = self._stats
            s.received += 1
            s.window_received += 1
            s.recent_stamps = (s.recent_stamps or [])[-RATE_SAMPLES:] + [stamp]
        self._last_image_mono = now
        self._mailbox.put((msg, now))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._sync.add(intrinsics_from_camera_info(msg, rectified=self._rectified))
        except Exception as e:  # noqa: BLE001 -- a malformed message must not stop the node
            self._warn("caminfo:malformed", f"ignoring a malformed CameraInfo on {self._info_topic}: {e}")
            return
        self._mailbox.notify()   # a frame may be waiting for exactly this one (exact policy)

    def _on_depth(self, msg: Image) -> None:
        h = msg.header
        self._depth_sync.add(DepthFrame(stamp_to_ns(h.stamp), str(h.frame_id), int(msg.width), int(msg.height),
                                        str(msg.encoding), msg))
        self._mailbox.notify()   # a frame may be waiting for exactly this one

    def _on_incompatible_qos(self, topic: str, ours: QoSProfile, event: Any) -> None:
        try:
            if topic == self._info_topic and self._camera_info_qos_changed(self._camera_info_qos()):
                return   # a CameraInfo publisher with other QoS joined: the graph check subscribes anew
        except Exception:  # noqa: BLE001 -- the graph query failed: report the incompatibility
            pass
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
            f"Fix: {self._args.param('qos_reliability', 'best_effort')} (accepts both), or make the "
            "publisher reliable"), period=10.0)

    def _refresh_subscribers(self) -> None:
        """Caches who listens to the optional outputs (the per-frame path reads only these)."""
        self._want_markers = self._marker_pub.get_subscription_count() > 0
        self._want_debug = self._debug_pub.get_subscription_count() > 0
        self._want_compressed = self._compressed_pub.get_subscription_count() > 0

    def _check_graph(self) -> None:
        try:
            self._info_has_publishers = self.count_publishers(self._info_topic) > 0
            if self._depth_sub is not None:
                self._depth_has_publishers = self.count_publishers(self._depth_topic) > 0
            if self._info_has_publishers:
                self._match_camera_info_publishers()
            self._refresh_subscribers()
            if not (self._active and self._enabled):
                return
            idle = time.monotonic() - (self._last_image_mono or self._idle_since)
            timeout = self._opts.image_timeout
            if idle > timeout:
                n = self.count_publishers(self._image_topic)
                if n == 0:
                    self._warn("no_image_publisher", (
                        f"no publisher on {self._image_topic} after {idle:.0f} s -- set "
                        f"{self._args.remap('image', '/camera/color/image_raw')} to your camera's image topic"),
                        period=max(30.0, timeout))
                else:
                    self._warn("no_image", (
                        f"{n} publisher(s) on {self._image_topic} but no image for {idle:.0f} s -- is the "
                        f"camera streaming? A QoS mismatch would also be reported (this node requests "
                        f"reliability={self._image_qos.reliability.name.lower()})"), period=max(30.0, timeout))
        except Exception as e:  # noqa: BLE001 -- e.g. during shutdown
            if not self._stopping.is_set():
                self._warn("graph", f"graph check failed: {e!r}")

    def _match_camera_info_publishers(self) -> None:
        """(Re)subscribes to CameraInfo with the QoS its publishers offer: a latched (reliable,
        transient-local) CameraInfo published before this node started still arrives, and a
        best-effort one is accepted. Subscribing again when a publisher with other QoS joins."""
        qos = self._camera_info_qos()
        if self._info_sub is not None:
            if not self._camera_info_qos_changed(qos):
                return
            self.destroy_subscription(self._info_sub)
        self._info_qos = qos
        self._info_sub = self.create_subscription(
            CameraInfo, "camera_info", self._on_camera_info, qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=lambda e: self._on_incompatible_qos(self._info_topic, qos, e)))

    def _camera_info_qos(self) -> QoSProfile:
        return matching_qos(i.qos_profile for i in self.get_publishers_info_by_topic(self._info_topic))

    def _camera_info_qos_changed(self, qos: QoSProfile) -> bool:
        return (self._info_qos is None
                or (self._info_qos.reliability, self._info_qos.durability) != (qos.reliability, qos.durability))

    # ----- inference thread -------------------------------------------------------------------

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

    def _run_thread(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        finally:
            self._thread_ended()

    def _worker_loop(self) -> None:
        mailbox, stopping = self._mailbox, self._stopping
        for old in list(self._stuck):      # a stopped worker may still be inside the pipeline
            old.join()
        while not stopping.is_set():
            item = mailbox.get()
            if item is None:
                break
            try:
                self._apply_pending()
                self._process(*item)
            except Exception as e:  # noqa: BLE001 -- one bad frame must never end the node
                if stopping.is_set() or not self.context.ok():
                    break       # shutting down: Ctrl-C may end the context before the worker is joined
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
            with self._stats_lock:
                self._stats.recent_stamps = []
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
                f"images of {len(msg.data) // 1024} KiB arrive over a best-effort subscription without a Fast DDS "
                "profile: with default settings Fast DDS loses most best-effort samples over ~0.5 MB between "
                "processes. If 'input rate' in /diagnostics is below the camera's, start the camera driver and "
                f"this node with {PROFILE_ENV[0]}={profile_path()} (`source scripts/env.sh` and the launch "
                f"file set it), or set {self._args.param('qos_reliability', 'reliable')} (the camera must "
                "publish reliable)")
        match = self._sync.match(stamp_ns, header.frame_id, width, height, self._info_has_publishers)
        if match.intrinsics is None and self._sync.policy == "exact" and self._opts.camera_info_wait > 0:
            self._mailbox.wait(lambda: self._sync.has_exact(stamp_ns, header.frame_id), self._opts.camera_info_wait)
            match = self._sync.match(stamp_ns, header.frame_id, width, height)
        for p in match.problems:
            text = p.text
            if self._args.launch:
                # sync's hint is in --ros-args form; launch-style arguments name the topic argument
                text = text.replace("Remap camera_info:=", "Set camera_info_topic:=")
            cause = p.key.split(":")[0]
            self._warn(f"caminfo:{p.key}", text, period=30.0 if cause in ("stale", "distortion") else 5.0)
        if not match.usable:
            self._skip(next((p.text for p in match.problems if p.skip), "no CameraInfo"))
            return None
        # Only with use_depth is `depth=` passed: an injected pipeline may not take it.
        use_depth = self._values["use_depth"]
        depth, depth_problem = (self._depth_for(header.frame_id, stamp_ns, width, height, received_mono)
                                if use_depth else (None, ""))
        t1 = time.perf_counter()
        hands = self._pipeline(rgb, match.intrinsics.K, match.intrinsics.D, stamp=stamp_ns * 1e-9,
                               **({} if depth is None else {"depth": depth}))
        t2 = time.perf_counter()
        if use_depth:
            self._count_depth(depth is not None, depth_problem, hands)
        self._publish(header, rgb, hands)
        if self._opts.publish_debug_image and (self._want_debug or self._want_compressed):
            # drawn, scaled, encoded and sent by the debug-image thread: never delays the above
            self._debug_box.put((header, rgb, hands, match.intrinsics))
        t3 = time.perf_counter()
        times = {"convert": (t1 - t0) * 1e3, "pipeline": (t2 - t1) * 1e3, "publish": (t3 - t2) * 1e3,
                 # arrival to start of processing: how long the frame sat in the mailbox
                 "wait": max(0.0, (time.monotonic() - received_mono) * 1e3 - (t3 - t0) * 1e3)}
        self._record(header, times)
        return times

    def _depth_for(self, frame_id: str, stamp_ns: int, width: int, height: int,
                   received_mono: float) -> tuple[Any, str]:
        """(The colour frame's depth image in metres, "") or (None, why not: RGB-only placement,
        with a throttled warning). A depth image still on its way is waited for, but never past
        depth_tolerance after the colour frame arrived, nor once a newer colour frame waits."""
        sync = self._depth_sync
        if sync.may_still_come(stamp_ns, frame_id):
            left = sync.tolerance - (time.monotonic() - received_mono)
            if left > 0:
                self._mailbox.wait(lambda: not sync.may_still_come(stamp_ns, frame_id), left)
        match = sync.match(stamp_ns, frame_id, width, height, self._depth_has_publishers)
        problem, depth = match.problem, None
        if match.depth is not None:
            try:
                depth = depth_image_to_metres(match.depth.msg)
            except ImageConversionError as e:
                problem = Problem(f"{e.key}:{frame_id}", (
                    f"unusable depth image on {sync.topic} (frame '{match.depth.frame_id}', stamp "
                    f"{format_stamp(match.depth.stamp_ns)}): {e}; placing the hands from RGB alone"), False)
        if problem is not None:
            self._warn(f"depth:{problem.key}", problem.text)
        return depth, problem.text if problem is not None else ""

    def _count_depth(self, had_depth: bool, problem: str, hands: list) -> None:
        """A frame's depth counters, in one update with its hands, so diagnostics never see a
        frame counted as having depth before its hands placed on depth are."""
        with self._stats_lock:
            s = self._stats
            if had_depth:
                s.with_depth += 1
                s.window_with_depth += 1
                s.hands_on_depth += sum(getattr(h, "placement", "rgb") == "rgbd" for h in hands)
            else:
                s.depth_fallbacks += 1
                s.window_depth_fallbacks += 1
                s.last_depth_problem = problem

    def _publish(self, header: Header, rgb: Any, hands: list) -> None:
        o = self._opts
        self._hands_pub.publish(hands_to_msg(header, hands, o.publish_vertices))
        sec, nsec, frame = header.stamp.sec, header.stamp.nanosec, header.frame_id
        if o.publish_tf and hands:
            if frame:
                selected = tf_hands(hands, self._tf_tracks)
                self._tf_tracks = {side: h.track_id for side, h in selected.items()}
                transforms = hand_transforms(header, selected, self._prefix, o.publish_joint_frames)
                if transforms:
                    self._tf_pub.publish(TFMessage(transforms=transforms))
            else:
                self._warn("empty_frame_id", "the image has an empty header.frame_id: no TF published (set the "
                           "camera driver's frame id, e.g. camera_color_optical_frame)")
        if o.publish_markers and self._want_markers:
            specs = marker_specs(hands, with_mesh=bool(self._pipeline.has_mesh))
            self._marker_pub.publish(marker_array_msg(header, specs) if self._cdr_problem
                                     else marker_array_cdr(sec, nsec, frame, specs))

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

    # ----- debug-image thread -----------------------------------------------------------------

    def _debug_loop(self) -> None:
        box, stopping = self._debug_box, self._stopping
        try:
            # Below the inference thread: on a busy CPU the robot's outputs go first. (Linux
            # schedules threads as tasks, so this niceness applies to this thread alone.)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DEBUG_THREAD_NICENESS)
        except (AttributeError, OSError):
            pass
        while not stopping.is_set():
            item = box.get()
            if item is None:
                break
            try:
                self._publish_debug(*item)
            except Exception as e:  # noqa: BLE001 -- a viewer's image must never end the node
                if stopping.is_set():
                    break
                self._warn(f"debug:{type(e).__name__}", f"debug image failed ({type(e).__name__}: {e})")

    def _publish_debug(self, header: Header, rgb: Any, hands: list, intrinsics: Any) -> None:
        # The one call that draws the debug image (intrinsics: K and D of this frame).
        overlay = draw_hands(rgb, hands, intrinsics.K, intrinsics.D)
        overlay = scale_image(overlay, self._opts.debug_image_scale)
        if self._want_debug:
            st = header.stamp
            self._debug_pub.publish(image_msg(header, overlay) if self._cdr_problem
                                    else image_cdr(st.sec, st.nanosec, header.frame_id, overlay))
        if self._want_compressed:
            self._compressed_pub.publish(compressed_image_msg(header, overlay, self._opts.debug_image_jpeg_quality))

    # ----- diagnostics ------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        try:
            self._diag_pub.publish(self.diagnostics())
        except Exception as e:  # noqa: BLE001
            if not self._stopping.is_set():
                self._warn("diagnostics", f"diagnostics failed: {e!r}")

    @property
    def frames_dropped(self) -> int:
        return self._dropped_before + self._mailbox.dropped

    def diagnostics(self) -> DiagnosticArray:
        """OK while the node runs as configured (joints-only without a checkpoint is a mode, and
        inactive or paused are states a manager chose); WARN for problems that need a look (no
        images, frames lost before they reach the node, all frames skipped, e.g. for a missing or
        unusable CameraInfo, its publisher gone, frame errors, an engine fallback, processing far
        below the input rate, a configured model on the CPU by `auto`, hands with NaN left out);
        ERROR when frames fail and none comes out."""
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
            depth_counts = dict(with_depth=s.with_depth, fallbacks=s.depth_fallbacks, hands=s.hands_on_depth,
                                last=s.last_depth_problem, window_with=s.window_with_depth,
                                window_fallbacks=s.window_depth_fallbacks)
            recent = list(s.recent_stamps or [])
            errors_before = getattr(self, "_errors_at_last_diag", 0)
            self._errors_at_last_diag = s.errors
            s.reset_window()
        p = self._pipeline

        def mean(xs: list[float]) -> float:
            return sum(xs) / len(xs) if xs else 0.0

        warnings, errors = [], []
        use_depth = bool(self._values["use_depth"])
        camera_hz, input_fraction = camera_rate(recent)
        engine = getattr(p, "engine", None)
        if engine is not None and getattr(engine, "fallback_reason", ""):
            warnings.append(f"backend '{self._values['backend']}' fell back to '{p.backend}': {engine.fallback_reason}")
        if self._active and self._enabled:
            idle = now_mono - (self._last_image_mono or self._idle_since)
            if idle > self._opts.image_timeout:
                warnings.append(f"no images on {self._image_topic} for {idle:.0f} s")
            elif input_fraction is not None and input_fraction < MIN_INPUT_FRACTION:
                warnings.append(f"only {100 * input_fraction:.0f}% of the camera's {camera_hz:.1f} Hz frames arrive "
                                "(lost in transport: large best-effort images need the Fast DDS profile "
                                f"{PROFILE_FILE} in the camera's process too)")
            if win_skip and not win_proc:
                warnings.append(f"all frames skipped: {total['last_skip']}")
            elif self._info_sub is not None and self._sync.received and self._info_has_publishers is False:
                warnings.append(f"CameraInfo publisher on {self._info_topic} is gone; using the last CameraInfo")
            if use_depth and depth_counts["window_fallbacks"] and not depth_counts["window_with"]:
                warnings.append(f"use_depth is on but no frame had its depth image: {depth_counts['last']}")
            if total["errors"] > errors_before:
                failed = f"{total['errors'] - errors_before} frame(s) failed: {total['last_skip']}"
                (errors if not win_proc else warnings).append(failed)    # nothing at all came out: a fault
            input_hz, processing_hz = win_recv / period, win_proc / period
            if input_hz > 0 and processing_hz < SLOW_FRACTION * input_hz:
                if self._slow_since is None:
                    self._slow_since = now_mono - period
                if now_mono - self._slow_since >= SLOW_FOR_S:
                    warnings.append(f"processing {processing_hz:.1f} Hz of {input_hz:.1f} Hz input for "
                                    f"{now_mono - self._slow_since:.0f} s: the model is the bottleneck on {p.device} "
                                    "(the newest frame is always taken; the rest are dropped)")
            else:
                self._slow_since = None
        nonfinite = int(getattr(p, "nonfinite_dropped", 0))
        if nonfinite > self._nonfinite_at_last_diag:
            warnings.append(f"{nonfinite - self._nonfinite_at_last_diag} hand(s) with NaN or infinite values "
                            "left out of every output")
        self._nonfinite_at_last_diag = nonfinite
        if p.has_mesh and self._values["device"] == "auto" and str(p.device) == "cpu":
            warnings.append("device 'auto' found no CUDA: HaMeR (ViT-H) runs on the CPU, seconds per frame. "
                            "Install a CUDA build of torch, or set device: cpu to choose this")
        mode = "mesh" if p.has_mesh else "joints-only (no checkpoint configured)"
        if not self._active:
            state = "inactive"
        elif not self._enabled:
            state = "paused (~/enable false)"
        else:
            state = f"processing at {win_proc / period:.1f} Hz"
        level = DiagnosticStatus.ERROR if errors else DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK
        message = "; ".join(errors + warnings + [f"{mode}, {state}"])
        kv = [
            ("state", state),
            ("input rate [Hz]", f"{win_recv / period:.2f}"),
            ("camera rate from stamps [Hz]", f"{camera_hz:.2f}" if camera_hz else "-"),
            ("processing rate [Hz]", f"{win_proc / period:.2f}"),
            ("frames received", total["received"]),
            ("frames processed", total["processed"]),
            ("frames dropped", self.frames_dropped),
            ("frames skipped", total["skipped"]),
            ("frame errors", total["errors"]),
            ("hands with NaN left out", nonfinite),
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
            ("detector", self._values["detector"]),
            ("camera infos received", self._sync.received),
            ("depth", self._depth_topic if use_depth else "off"),
            ("depth images received", self._depth_sync.received if self._depth_sync is not None else 0),
            ("frames with depth", depth_counts["with_depth"]),
            ("frames without depth (fallback)", depth_counts["fallbacks"]),
            ("hands placed on depth", depth_counts["hands"]),
            ("last depth fallback reason", depth_counts["last"]),
            ("tf prefix", self._prefix),
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
        """Stops the threads (joining them), then releases what they used (idempotent). For
        process exit, when the context may already be shut down; a manager uses the transitions."""
        self._active = False
        try:
            self._update_image_subscription()
        except Exception:  # noqa: BLE001 -- the context may be gone
            pass
        self._stop_threads()
        try:
            self._release()
        except Exception:  # noqa: BLE001
            pass
        if self._py_log_handler is not None:
            logging.getLogger("hamer_ros").removeHandler(self._py_log_handler)
            self._py_log_handler = None


def camera_rate(stamps: list[int], max_gap_s: float = 1.0) -> tuple[float | None, float | None]:
    """(the camera's frame rate, the fraction of its frames that arrived), from the stamps of
    consecutively received frames: the camera's period is the short end (10th percentile) of the
    gaps; longer gaps are frames lost on the way. Pauses over max_gap_s and backwards steps are
    left out. (None, None) with fewer than 10 usable gaps."""
    gaps = [(b - a) / 1e9 for a, b in zip(stamps, stamps[1:]) if 0 < (b - a) / 1e9 <= max_gap_s]
    if len(gaps) < 10:
        return None, None
    period = sorted(gaps)[len(gaps) // 10]
    expected = sum(gaps) / period
    return 1.0 / period, min(1.0, len(gaps) / expected)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> None:
    rc = 0
    node = None
    # rclpy's own SIGTERM handler shuts the context down and then chains to the previous handler,
    # which by default kills the process (exit 143, no cleanup). A Python handler in its place
    # turns SIGTERM into the same clean stop as Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    profile = use_shipped_profile()
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
        if profile:
            node.get_logger().info(f"Fast DDS profile for large images: {profile} (set "
                                   f"{PROFILE_ENV[0]} to use your own)")
        if node.autostart:
            node.start()
        else:
            node.get_logger().info("autostart is false: unconfigured, waiting for a lifecycle manager "
                                   f"({node.get_fully_qualified_name()}/change_state)")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not node.finalized:   # the shutdown transition ends the process (exit 0)
            executor.spin_once(timeout_sec=0.2)
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
