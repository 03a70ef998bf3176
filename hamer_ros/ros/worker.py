"""hand_mesh_node's inference thread: takes the newest image from the mailbox, pairs it with its
CameraInfo (and depth image), runs the pipeline and publishes. One frame at a time; a frame that
arrives meanwhile replaces the waiting one (counted as dropped), so the output follows the camera
with at most one frame of delay, whatever the model's speed, and nothing queues."""
from __future__ import annotations

import gc
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from sensor_msgs.msg import Image

from .dds_profile import PROFILE_ENV, profile_path
from .diagnostics import FrameStats
from .hints import ArgStyle
from .image import ImageConversionError, depth_image_to_metres, image_to_rgb
from .log import ThrottledLog
from .outputs import Outputs
from ..settings import pipeline_fields
from .parameters import Options
from .sync import CameraInfoSync, DepthSync, LatestMailbox, Problem, StampMonitor, format_stamp, stamp_to_ns

@dataclass
class GraphState:
    """Who publishes the inputs, cached by the node's graph timer (the per-frame path asks the
    ROS graph nothing). None: not known yet."""

    info_has_publishers: bool | None = None
    depth_has_publishers: bool | None = None


@dataclass
class FrameContext:
    """What a frame needs, made at configure: the pipeline, the input pairing and the outputs."""

    pipeline: Any
    sync: CameraInfoSync
    depth_sync: DepthSync
    outputs: Outputs
    stats: FrameStats
    stamps: StampMonitor
    graph: GraphState
    log: ThrottledLog
    args: ArgStyle
    image_topic: str
    now_ns: Callable[[], int]               # the node's clock
    warn_large_best_effort: bool = False    # once, for large images without the Fast DDS profile


class InferenceWorker:
    """`run()` is the thread's body; `options()` and `take_pending()` read the node's current
    settings (the output switches, and pipeline changes to apply between frames)."""

    def __init__(self, ctx: FrameContext, mailbox: LatestMailbox, stopping: threading.Event,
                 options: Callable[[], Options], take_pending: Callable[[], dict[str, Any]],
                 context_ok: Callable[[], bool]) -> None:
        self.ctx = ctx
        self.mailbox = mailbox
        self.stopping = stopping
        self._options = options
        self._take_pending = take_pending
        self._context_ok = context_ok

    def run(self) -> None:
        while not self.stopping.is_set():
            item = self.mailbox.get()
            if item is None:
                break
            try:
                self._apply_pending()
                self.process(*item)
            except Exception as e:  # noqa: BLE001 -- one bad frame must never end the node
                if self.stopping.is_set() or not self._context_ok():
                    break       # shutting down: Ctrl-C may end the context before the worker is joined
                self.ctx.stats.failed(e)
                self.ctx.log.warning(f"error:{type(e).__name__}", (
                    f"frame failed ({type(e).__name__}: {e}); continuing with the next one\n"
                    f"{traceback.format_exc(limit=4)}"))

    def _apply_pending(self) -> None:
        """Pipeline changes, applied between frames on the thread that runs the pipeline."""
        pending = self._take_pending()
        if not pending:
            return
        try:
            self.ctx.pipeline.reconfigure(**pipeline_fields(pending))
        except Exception as e:  # noqa: BLE001 -- e.g. MediaPipe failing to restart
            self.ctx.log.ros.error(f"could not apply {sorted(pending)} ({e}); keeping the previous settings")

    def _skip(self, reason: str) -> None:
        self.ctx.stats.skipped(reason)

    def process(self, msg: Image, received_mono: float) -> dict[str, float] | None:
        """One frame: convert, pair with intrinsics, infer, publish. Returns the time split (ms)."""
        ctx, opts = self.ctx, self._options()
        t0 = time.perf_counter()
        header = msg.header
        stamp_ns = stamp_to_ns(header.stamp)
        prev = ctx.stamps.update(stamp_ns)
        if prev is not None:
            ctx.log.warning("backwards", (
                f"image stamps went backwards ({format_stamp(prev)} -> {format_stamp(stamp_ns)}), e.g. a "
                "looping bag or a restarted driver: hand tracks, filters and the detector's tracking start "
                "afresh; frames are still processed"))
            ctx.stats.forget_stamps()
        try:
            rgb = image_to_rgb(msg)
        except ImageConversionError as e:
            self._skip(str(e))
            ctx.log.warning(f"image:{e.key}", f"skipping image {format_stamp(stamp_ns)} on {ctx.image_topic}: {e}")
            return None
        height, width = rgb.shape[:2]
        if ctx.warn_large_best_effort and len(msg.data) > 500_000:
            ctx.warn_large_best_effort = False
            ctx.log.ros.warning(
                f"images of {len(msg.data) // 1024} KiB arrive over a best-effort subscription without a Fast DDS "
                "profile: with default settings Fast DDS loses most best-effort samples over ~0.5 MB between "
                "processes. If 'input rate' in /diagnostics is below the camera's, start the camera driver and "
                f"this node with {PROFILE_ENV[0]}={profile_path()} (`source scripts/env.sh` and the launch "
                f"file set it), or set {ctx.args.param('qos_reliability', 'reliable')} (the camera must "
                "publish reliable)")
        sync = ctx.sync
        match = sync.match(stamp_ns, header.frame_id, width, height, ctx.graph.info_has_publishers)
        if match.intrinsics is None and sync.policy == "exact" and opts.camera_info_wait > 0:
            self.mailbox.wait(lambda: sync.has_exact(stamp_ns, header.frame_id), opts.camera_info_wait)
            match = sync.match(stamp_ns, header.frame_id, width, height)
        for p in match.problems:
            text = p.text
            if ctx.args.launch:
                # sync's hint is in --ros-args form; launch-style arguments name the topic argument
                text = text.replace("Remap camera_info:=", "Set camera_info_topic:=")
            cause = p.key.split(":")[0]
            ctx.log.warning(f"caminfo:{p.key}", text, period=30.0 if cause in ("stale", "distortion") else 5.0)
        if not match.usable:
            self._skip(next((p.text for p in match.problems if p.skip), "no CameraInfo"))
            return None
        # Only with use_depth is `depth=` passed: an injected pipeline may not take it.
        depth, depth_problem = (self._depth_for(header.frame_id, stamp_ns, width, height, received_mono)
                                if opts.use_depth else (None, ""))
        t1 = time.perf_counter()
        hands = ctx.pipeline(rgb, match.intrinsics.K, match.intrinsics.D, stamp=stamp_ns * 1e-9,
                             **({} if depth is None else {"depth": depth}))
        t2 = time.perf_counter()
        if opts.use_depth:
            ctx.stats.depth(depth is not None, depth_problem,
                            sum(getattr(h, "placement", "rgb") == "rgbd" for h in hands))
        ctx.outputs.publish(header, hands, opts)
        t3 = time.perf_counter()
        times = {"convert": (t1 - t0) * 1e3, "pipeline": (t2 - t1) * 1e3, "publish": (t3 - t2) * 1e3,
                 # arrival to start of processing: how long the frame sat in the mailbox
                 "wait": max(0.0, (time.monotonic() - received_mono) * 1e3 - (t3 - t0) * 1e3)}
        ctx.stats.processed(times, ctx.pipeline.last_times, (ctx.now_ns() - stamp_ns) / 1e6)
        return times

    def _depth_for(self, frame_id: str, stamp_ns: int, width: int, height: int,
                   received_mono: float) -> tuple[Any, str]:
        """(The colour frame's depth image in metres, "") or (None, why not: RGB-only placement,
        with a throttled warning). A depth image still on its way is waited for, but never past
        depth_tolerance after the colour frame arrived, nor once a newer colour frame waits."""
        sync = self.ctx.depth_sync
        if sync.may_still_come(stamp_ns, frame_id):
            left = sync.tolerance - (time.monotonic() - received_mono)
            if left > 0:
                self.mailbox.wait(lambda: not sync.may_still_come(stamp_ns, frame_id), left)
        match = sync.match(stamp_ns, frame_id, width, height, self.ctx.graph.depth_has_publishers)
        problem, depth = match.problem, None
        if match.depth is not None:
            try:
                depth = depth_image_to_metres(match.depth.msg)
            except ImageConversionError as e:
                problem = Problem(f"{e.key}:{frame_id}", (
                    f"unusable depth image on {sync.topic} (frame '{match.depth.frame_id}', stamp "
                    f"{format_stamp(match.depth.stamp_ns)}): {e}; placing the hands from RGB alone"), False)
        if problem is not None:
            self.ctx.log.warning(f"depth:{problem.key}", problem.text)
        return depth, problem.text if problem is not None else ""


# How long stopping waits for a frame in progress: the executor (services, timers, transitions)
# waits with it. A thread still running after that keeps what it uses: nothing is closed under it;
# the pipeline it holds is closed when it ends (a ViT-H frame on a slow CPU takes seconds), and a
# new worker waits for it before using the pipeline.
JOIN_TIMEOUT_S = 1.0


class InferenceThread:
    """The inference thread's life: started with a worker, stopped (joined for at most
    JOIN_TIMEOUT_S), and a pipeline released while a stopped thread still runs is closed by that
    thread as it ends. Also the mailbox that feeds it (a fresh one per start)."""

    def __init__(self, log: Any, keep: Any = None) -> None:
        """`log`: a ROS logger; `keep`: a pipeline never freed here (one a caller injected)."""
        self._log = log
        self._keep = keep                  # a pipeline that is not ours to free (injected)
        self._thread: threading.Thread | None = None
        self._stuck: list[threading.Thread] = []     # stopped but still finishing a frame
        self._orphan: Any = None                     # a pipeline released while a thread still used it
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.mailbox: LatestMailbox = LatestMailbox()
        self._dropped_before = 0

    def start(self, make_worker: Callable[[LatestMailbox, threading.Event], InferenceWorker]) -> InferenceWorker:
        self.stopping = threading.Event()   # a stopped thread that still finishes keeps its own, set
        self.mailbox = LatestMailbox()
        worker = make_worker(self.mailbox, self.stopping)
        stuck = list(self._stuck)

        def body() -> None:
            for old in stuck:      # a stopped worker may still be inside the pipeline
                old.join()
            try:
                worker.run()
            finally:
                self._ended()

        self._thread = threading.Thread(target=body, name="hand_mesh_inference", daemon=True)
        self._thread.start()
        return worker

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stuck(self) -> bool:
        """A stopped thread is still finishing its frame."""
        return any(t.is_alive() and t is not threading.current_thread() for t in self._stuck)

    @property
    def frames_dropped(self) -> int:
        return self._dropped_before + self.mailbox.dropped

    def stop(self) -> None:
        """Stops and joins the thread, so nothing it uses is closed or destroyed under it."""
        self.stopping.set()
        self.mailbox.close()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join(timeout=JOIN_TIMEOUT_S)
            if t.is_alive():
                self._stuck.append(t)
                self._log.warning(f"thread {t.name} still finishes a frame after {JOIN_TIMEOUT_S:.0f} s; not "
                                  "waiting for it (what it uses is kept until it ends)")
        self._stuck = [t for t in self._stuck if t.is_alive()]
        self._dropped_before += self.mailbox.dropped
        self.mailbox = LatestMailbox()     # a fresh, open one: counters read it until the next start

    def reset_counts(self) -> None:
        self._dropped_before = 0

    def release(self, pipeline: Any) -> None:
        """Closes the pipeline now, or, while a stopped thread still uses it, when that thread ends."""
        with self._lock:
            if self.stuck:
                self._orphan = pipeline
                return
        self._close(pipeline)

    def _ended(self) -> None:
        """A thread's last act: the last of the stuck threads closes the pipeline released under it."""
        with self._lock:
            if self.stuck or self._orphan is None:
                return
            pipeline, self._orphan = self._orphan, None
        self._log.info("a stopped thread finished its frame; closing the pipeline it kept")
        self._close(pipeline)

    def _close(self, pipeline: Any) -> None:
        if hasattr(pipeline, "close"):
            try:
                pipeline.close()
            except Exception as e:  # noqa: BLE001 -- releasing anyway
                self._log.warning(f"closing the pipeline failed: {e!r}")
        if pipeline is not self._keep:
            del pipeline
            gc.collect()
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()     # the model's GPU memory back to other processes
