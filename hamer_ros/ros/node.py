"""hand_mesh_node: a thin ROS 2 shell around perception.HandPipeline, as a managed (lifecycle) node.

Lifecycle: the constructor only declares parameters and the `~/enable` service. configure builds
the pipeline (loads and self-checks the model and engine), the publishers and the timers;
activate starts the inference thread and the image subscription; deactivate stops them (joining
the thread) without unloading; cleanup releases the model and GPU memory. With `autostart`
(default) the node takes itself to active at start, so it runs like a plain node.

Threads: the executor thread runs the callbacks, which only store things (the newest image into
a one-slot mailbox, CameraInfos into CameraInfoSync, depth images into DepthSync) and run timers,
services and transitions; the inference thread (worker.py) converts, infers and publishes what a
robot needs (outputs.py). Drawing is another process's (viz_node.py), so a viewer never delays
the robot's outputs. Every output carries the input image's header (stamp and frame id) exactly.
"""
from __future__ import annotations

import difflib
import logging
import os
import threading
import time
from dataclasses import replace
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import SetBool

from .camera_info_sub import CameraInfoSubscription
from .compat import SubscriptionEventCallbacks
from .dds_profile import PROFILE_ENV
from .diagnostics import Diagnostics, FrameStats, NodeState
from .entry import StartupError, run_node
from .hints import ArgStyle
from .log import ForwardToRos, ThrottledLog
from .model_setup import build_pipeline, report_model_state
from .outputs import Outputs
from ..settings import PARAMETER_SPECS, PARAMETERS, PIPELINE_PARAMS, RETIRED, dependent_parameter_problem
from .parameters import OPTION_NAMES, ROS_OWN_PARAMETERS, Options, ParameterProblem, declare_parameters
from .sync import (CameraInfoSync, DepthFrame, DepthSync, StampMonitor, intrinsics_from_camera_info,
                   stamp_to_ns)
from .worker import FrameContext, GraphState, InferenceThread, InferenceWorker

NODE_NAME = "hand_mesh_node"

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE

class HandMeshNode(LifecycleNode):
    """See the module docstring. `pipeline`: inject a ready pipeline (tests, benchmarks) instead
    of building one from the parameters at configure. Bad parameter values raise StartupError
    here; a failed configure is reported by `start()` (and, for a lifecycle manager, as FAILURE)."""

    def __init__(self, pipeline: Any = None, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._log = ThrottledLog(self.get_logger())
        self._args = ArgStyle.from_env()
        self._injected_pipeline = pipeline
        self._stats = FrameStats()
        self._diagnostics = Diagnostics()
        self._graph = GraphState()
        self._pending: dict[str, Any] = {}
        self._pending_lock = threading.Lock()
        self._pipeline: Any = None
        self._ctx: FrameContext | None = None
        self._outputs: Outputs | None = None
        self._thread = InferenceThread(self.get_logger(), keep=pipeline)
        self._worker: InferenceWorker | None = None
        self._active = False
        self._enabled = True
        self._configure_error = ""
        self._autostarting = False
        self.finalized = False
        self._image_sub = self._depth_sub = None
        self._depth_sync: DepthSync | None = None
        self._timers: list[Any] = []
        self._idle_since = self._last_diag_mono = time.monotonic()
        self._last_image_mono: float | None = None
        self._py_log_handler: ForwardToRos | None = ForwardToRos(self.get_logger())
        logging.getLogger("hamer_ros").addHandler(self._py_log_handler)
        logging.getLogger("hamer_ros").setLevel(logging.INFO)
        try:
            self._values = self._declare_parameters()
        except BaseException:
            self.close()
            self.destroy_node()
            raise
        self._opts = Options(**{k: self._values[k] for k in OPTION_NAMES})
        self._image_topic = self.resolve_topic_name("image")
        self._depth_topic = self.resolve_topic_name("depth")
        self._info = CameraInfoSubscription(self, self._on_camera_info, self._on_incompatible_info)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_service(SetBool, "~/enable", self._on_enable)

    @property
    def autostart(self) -> bool:
        return bool(self._values["autostart"])

    def begin(self) -> None:
        """At process start: to active with autostart, else wait for a lifecycle manager."""
        if self.autostart:
            self.start()
        else:
            self._log.ros.info("autostart is false: unconfigured, waiting for a lifecycle manager "
                               f"({self.get_fully_qualified_name()}/change_state)")

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
            if not self._autostarting:   # start() raises it, and the process logs it as fatal
                self._log.ros.error(f"configure failed: {self._configure_error}")
            self._release()
            return FAILURE
        v, p = self._values, self._pipeline
        self._log.ros.info(
            f"configured: image={self._image_topic} camera_info={self._info.topic} "
            f"detector={v['detector']} model={'mesh' if p.has_mesh else 'joints-only'} "
            f"device={p.device} backend={p.backend} image QoS={v['qos_reliability']} "
            f"camera_info_sync={v['camera_info_sync']} depth={self._depth_topic if v['use_depth'] else 'off'}")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._worker = self._thread.start(lambda mailbox, stopping: InferenceWorker(
            self._ctx, mailbox, stopping, options=lambda: self._opts, take_pending=self._take_pending,
            context_ok=self.context.ok))
        ret = super().on_activate(state)      # enables the lifecycle publishers
        self._active = True
        self._idle_since = time.monotonic()
        self._update_image_subscription()
        self._log.ros.info("active" + ("" if self._enabled else " (inference paused: ~/enable is false)"))
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._log.ros.info("inactive (model kept loaded)")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._log.ros.info("unconfigured (model released)")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._release()
        self.finalized = True
        self._log.ros.info("shut down (finalized)")
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._release()
        return SUCCESS    # back to unconfigured: a manager may configure again

    def _stop(self) -> None:
        """No subscription, thread joined: nothing runs that uses what a later step releases."""
        self._active = False
        self._update_image_subscription()
        self._thread.stop()
        self._worker = None      # it holds the pipeline: cleanup must leave nothing holding it

    # ----- configure / release ----------------------------------------------------------------

    def _configure(self) -> None:
        v = self._values
        with self._pending_lock:
            self._pending = {}     # the pipeline is built from the current values
        # The pipeline logs its model state; the node reports it once, with more context.
        self._py_log_handler.muted.add("hamer_ros.perception.pipeline")
        try:
            self._pipeline = (self._injected_pipeline if self._injected_pipeline is not None
                              else build_pipeline(v))
        finally:
            self._py_log_handler.muted.clear()
        report_model_state(self._pipeline, v, self._args, self._log.ros)
        self._depth_sync = DepthSync(
            self._depth_topic, v["depth_tolerance"],
            remap_hint=self._args.remap_hint("depth", "/camera/aligned_depth_to_color/image_raw"))
        reliability = (ReliabilityPolicy.BEST_EFFORT if v["qos_reliability"] == "best_effort"
                       else ReliabilityPolicy.RELIABLE)
        self._image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                                     durability=DurabilityPolicy.VOLATILE)
        self._stats = FrameStats()
        self._diagnostics = Diagnostics()
        self._thread.reset_counts()
        self._outputs = Outputs(self, self._pipeline, self._log.warning)
        self._ctx = FrameContext(
            pipeline=self._pipeline,
            sync=CameraInfoSync(self._info.topic, v["camera_info_sync"], v["camera_info_timeout"],
                                any_frame=v["camera_info_any_frame"]),
            depth_sync=self._depth_sync, outputs=self._outputs, stats=self._stats, stamps=StampMonitor(),
            graph=self._graph,
            log=self._log, args=self._args, image_topic=self._image_topic,
            now_ns=lambda: self.get_clock().now().nanoseconds,
            # Fast DDS loses large best-effort samples without a profile that enlarges its shared
            # memory segment (config/fastdds_large_images.xml); say so once if none is set.
            warn_large_best_effort=(reliability == ReliabilityPolicy.BEST_EFFORT
                                    and "fastrtps" in rclpy.get_rmw_implementation_identifier()
                                    and not any(os.environ.get(k) for k in PROFILE_ENV)))
        self._idle_since = self._last_diag_mono = time.monotonic()
        self._last_image_mono = None
        self._timers = [self.create_timer(v["diagnostics_period"], self._publish_diagnostics),
                        self.create_timer(0.5, self._check_graph)]
        self._check_graph()

    def _release(self) -> None:
        """Undoes configure: timers, subscriptions, publishers, and the model (GPU memory too).
        The thread is stopped before (deactivate); one that is stuck keeps its pipeline."""
        for t in self._timers:
            self.destroy_timer(t)
        self._timers = []
        self._info.destroy()
        if self._outputs is not None:
            self._outputs.destroy()
            self._outputs = None
        self._ctx = None
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            self._thread.release(pipeline)

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

    def _image_subscription(self, sub: Any, want: bool, name: str, topic: str, callback: Any) -> Any:
        """`sub`, an Image subscription to `name` (resolved: `topic`), created or destroyed so that
        it exists exactly when wanted."""
        if want and sub is None:
            return self.create_subscription(
                Image, name, callback, self._image_qos,
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=lambda e: self._report_incompatible(topic, self._image_qos, e)))
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
            self._log.ros.info(response.message)
        return response

    # ----- parameters -------------------------------------------------------------------------

    def _declare_parameters(self) -> dict[str, Any]:
        try:
            values = declare_parameters(self, PARAMETERS)
        except ParameterProblem as e:
            raise StartupError(str(e)) from None
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
            if name in RETIRED:
                self._log.ros.warning(f"parameter '{name}' is ignored: {RETIRED[name]}")
                continue
            close = difflib.get_close_matches(name, list(PARAMETER_SPECS), n=1)
            self._log.ros.warning(f"parameter '{name}' is not a parameter of this node and is ignored"
                                  + (f"; did you mean '{close[0]}'?" if close else "")
                                  + " (the README lists them all)")

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
        ctx = self._ctx
        if ctx is not None:
            if "camera_info_sync" in changed:
                ctx.sync.policy = changed["camera_info_sync"]
            if "camera_info_timeout" in changed:
                ctx.sync.stale_after = changed["camera_info_timeout"]
            if "camera_info_any_frame" in changed:
                ctx.sync.any_frame = changed["camera_info_any_frame"]
        if self._depth_sync is not None and "depth_tolerance" in changed:
            self._depth_sync.tolerance = changed["depth_tolerance"]
        if "use_depth" in changed:
            self._update_image_subscription()
        pipe = {k: v for k, v in changed.items() if k in PIPELINE_PARAMS}
        if "rois" in pipe and self._values["detector"] != "fixed":
            self._log.ros.warning("rois changed, but detector is not 'fixed': no effect")
            del pipe["rois"]
        if pipe and self._pipeline is not None:
            with self._pending_lock:
                self._pending.update(pipe)
        for k, v in changed.items():
            self._log.ros.info(f"parameter {k} = {v!r}")

    def _take_pending(self) -> dict[str, Any]:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        return pending

    # ----- callbacks (executor thread) --------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        self._stats.received(stamp_to_ns(msg.header.stamp))
        self._last_image_mono = now
        self._thread.mailbox.put((msg, now))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if self._ctx is None:
            return
        try:
            self._ctx.sync.add(intrinsics_from_camera_info(msg, rectified=self._values["image_is_rectified"]))
        except Exception as e:  # noqa: BLE001 -- a malformed message must not stop the node
            self._log.warning("caminfo:malformed", f"ignoring a malformed CameraInfo on {self._info.topic}: {e}")
            return
        self._thread.mailbox.notify()   # a frame may be waiting for exactly this one (exact policy)

    def _on_depth(self, msg: Image) -> None:
        h = msg.header
        self._depth_sync.add(DepthFrame(stamp_to_ns(h.stamp), str(h.frame_id), int(msg.width), int(msg.height),
                                        str(msg.encoding), msg))
        self._thread.mailbox.notify()   # a frame may be waiting for exactly this one

    def _on_incompatible_info(self, qos: QoSProfile, event: Any) -> None:
        self._report_incompatible(self._info.topic, qos, event)

    def _report_incompatible(self, topic: str, ours: QoSProfile, event: Any) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        try:
            offered = sorted({f"reliability={i.qos_profile.reliability.name.lower()}, "
                              f"durability={i.qos_profile.durability.name.lower()}"
                              for i in self.get_publishers_info_by_topic(topic)})
        except Exception:  # noqa: BLE001
            offered = []
        self._log.warning(f"qos:{topic}", (
            f"a publisher on {topic} has incompatible QoS ({policy}); none of its messages will arrive. "
            f"Publishers offer: {'; '.join(offered) or 'unknown'}. This node requests "
            f"reliability={ours.reliability.name.lower()}, durability={ours.durability.name.lower()}. "
            f"Fix: {self._args.param('qos_reliability', 'best_effort')} (accepts both), or make the "
            "publisher reliable"), period=10.0)

    def _check_graph(self) -> None:
        try:
            self._graph.info_has_publishers = self._info.refresh()
            if self._depth_sub is not None:
                self._graph.depth_has_publishers = self.count_publishers(self._depth_topic) > 0
            if not (self._active and self._enabled):
                return
            idle = time.monotonic() - (self._last_image_mono or self._idle_since)
            timeout = self._opts.image_timeout
            if idle > timeout:
                n = self.count_publishers(self._image_topic)
                if n == 0:
                    self._log.warning("no_image_publisher", (
                        f"no publisher on {self._image_topic} after {idle:.0f} s -- set "
                        f"{self._args.remap('image', '<topic>')} to your camera's image topic (`ros2 topic list "
                        "-t` shows them: sensor_msgs/msg/Image)"),
                        period=max(30.0, timeout))
                else:
                    self._log.warning("no_image", (
                        f"{n} publisher(s) on {self._image_topic} but no image for {idle:.0f} s -- is the "
                        f"camera streaming? A QoS mismatch would also be reported (this node requests "
                        f"reliability={self._image_qos.reliability.name.lower()})"), period=max(30.0, timeout))
        except Exception as e:  # noqa: BLE001 -- e.g. during shutdown
            if not self._thread.stopping.is_set():
                self._log.warning("graph", f"graph check failed: {e!r}")

    # ----- diagnostics ------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        try:
            self._outputs.diagnostics.publish(self.diagnostics())
        except Exception as e:  # noqa: BLE001
            if not self._thread.stopping.is_set():
                self._log.warning("diagnostics", f"diagnostics failed: {e!r}")

    @property
    def frames_dropped(self) -> int:
        return self._thread.frames_dropped

    def diagnostics(self) -> DiagnosticArray:
        """The node's status (diagnostics.Diagnostics says what each level means)."""
        now = time.monotonic()
        period = max(1e-3, now - self._last_diag_mono)
        self._last_diag_mono = now
        v, ctx = self._values, self._ctx
        state = NodeState(
            name=self.get_fully_qualified_name(), active=self._active, enabled=self._enabled,
            idle_s=now - (self._last_image_mono or self._idle_since), image_timeout=self._opts.image_timeout,
            image_topic=self._image_topic, info_topic=self._info.topic,
            info_subscribed=self._info.subscription is not None,
            infos_received=ctx.sync.received if ctx is not None else 0,
            info_has_publishers=self._graph.info_has_publishers, use_depth=bool(self._opts.use_depth),
            depth_topic=self._depth_topic,
            depths_received=self._depth_sync.received if self._depth_sync is not None else 0,
            frames_dropped=self.frames_dropped,
            tf_prefix=self._outputs.tf_prefix(self._opts) if self._outputs is not None else "",
            settings={k: v[k] for k in ("backend", "device", "detector")})
        out = DiagnosticArray(status=[self._diagnostics.status(self._stats.take(), state, self._pipeline,
                                                               period, now)])
        out.header.stamp = self.get_clock().now().to_msg()
        return out

    # ----- misc -------------------------------------------------------------------------------

    @property
    def pipeline(self) -> Any:
        return self._pipeline

    def close(self) -> None:
        """Stops the thread (joining it), then releases what it used (idempotent). For process
        exit, when the context may already be shut down; a manager uses the transitions."""
        self._active = False
        try:
            self._update_image_subscription()
        except Exception:  # noqa: BLE001 -- the context may be gone
            pass
        self._thread.stop()
        try:
            self._release()
        except Exception:  # noqa: BLE001
            pass
        if self._py_log_handler is not None:
            logging.getLogger("hamer_ros").removeHandler(self._py_log_handler)
            self._py_log_handler = None


def main(args: list[str] | None = None) -> None:
    run_node(NODE_NAME, HandMeshNode, args)


if __name__ == "__main__":
    main()
