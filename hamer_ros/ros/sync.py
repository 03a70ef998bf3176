"""Pairing images with camera intrinsics, the newest-frame mailbox, and log throttling.

Why not message_filters: an ExactTime / ApproximateTime synchronizer only emits a pair when
both topics have a message close in time, so an image is silently dropped whenever CameraInfo is
published once (latched, as many drivers and bag tools do) or at a lower rate than the images;
it also queues frames on both topics, which adds latency behind a slow model, and it is not
installable here. Intrinsics change rarely, so the node pairs each image with the newest
CameraInfo of the same frame (policy `latest`) and never waits for one. Where the intrinsics do
change per frame (zoom, auto-calibration), policy `exact` pairs by identical stamp from a small
buffer instead.

Everything here is plain Python on plain values (duck-typed messages, nanosecond stamps), so it
is unit-tested without ROS; the node only feeds it.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

import numpy as np

from ..settings import SYNC_POLICIES


# Distortion models whose coefficients mean what OpenCV's undistortPoints expects.
OPENCV_MODELS = ("plumb_bob", "rational_polynomial")


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (sec, nanosec) -> integer nanoseconds (exact; no float rounding)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def format_stamp(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def intrinsics_problem(K: np.ndarray) -> tuple[str, str] | None:
    """(kind, why) when K cannot be used to place hands, else None. `kind` groups log messages."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        return "shape", f"K must be 3x3, got shape {K.shape}"
    if not np.all(np.isfinite(K)):
        return "nan", f"K contains NaN or infinite values (fx={K[0, 0]}, fy={K[1, 1]}, cx={K[0, 2]}, cy={K[1, 2]})"
    if not np.any(K):
        return "zero", "K is all zeros (an uncalibrated camera, or a driver that does not fill CameraInfo.k)"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return "focal", f"focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}"
    return None


def check_intrinsics(K: np.ndarray) -> str | None:
    """Why K cannot be used to place hands, or None when it can."""
    problem = intrinsics_problem(K)
    return None if problem is None else problem[1]


@dataclass(frozen=True)
class Intrinsics:
    """What the pipeline needs from one CameraInfo."""

    K: np.ndarray                 # 3x3 float64
    D: np.ndarray | None          # OpenCV distortion coefficients, None when none apply
    stamp_ns: int
    frame_id: str
    width: int
    height: int
    problem: str | None = None    # why K is unusable (see check_intrinsics); None = usable
    problem_kind: str = ""        # groups problems of one kind (for log throttling)
    lens_problem: str | None = None   # a distortion model this package cannot apply: frames are skipped


def intrinsics_from_camera_info(msg: Any, rectified: bool = False) -> Intrinsics:
    """sensor_msgs/CameraInfo -> Intrinsics of the image it describes.

    rectified=False: the image is the raw one, so K (`k`) with the distortion `d` applies.
    rectified=True: the image was rectified (image_rect*), so the projection P[:, :3] applies and
    there is no distortion left (the REP-104 convention image_geometry follows).
    Binning and region of interest (REP-104) are applied as image_geometry's PinholeCameraModel
    does: the image is the ROI of the full sensor, binned, so fx' = fx / b_x and
    cx' = (cx - x_offset) / b_x (likewise y), and its size is the ROI's (or the full one) / binning.
    The distortion stays as it is: it acts on normalised coordinates, which do not change.
    """
    lens_problem = None
    if rectified:
        K = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)[:, :3].copy()
        D = None
    else:
        K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3).copy()
        d = np.asarray(msg.d, dtype=np.float64).reshape(-1)
        model = str(msg.distortion_model)
        if d.size == 0 or not np.any(d):
            D = None
        elif model in OPENCV_MODELS and np.all(np.isfinite(d)):
            D = d.copy()
        else:
            # e.g. a fisheye's 'equidistant': placing hands with another lens model would put them
            # somewhere wrong without a word, so their frames are not placed at all
            D = None
            lens_problem = (f"distortion model '{model}' with coefficients {d.tolist()} is not supported "
                            f"(only {', '.join(OPENCV_MODELS)}); skipping the frame rather than placing hands "
                            "with the wrong lens model. Feed the rectified image (image_proc's image_rect) and "
                            "set image_is_rectified:=true")
    bx, by = max(1, int(getattr(msg, "binning_x", 0))), max(1, int(getattr(msg, "binning_y", 0)))
    roi = getattr(msg, "roi", None)
    x_off, y_off = (int(roi.x_offset), int(roi.y_offset)) if roi is not None else (0, 0)
    roi_w, roi_h = (int(roi.width), int(roi.height)) if roi is not None else (0, 0)
    K[0, 2] -= x_off
    K[1, 2] -= y_off
    K[0] /= bx
    K[1] /= by
    width, height = (roi_w, roi_h) if roi_w > 0 and roi_h > 0 else (int(msg.width), int(msg.height))
    kind, problem = intrinsics_problem(K) or ("", None)
    return Intrinsics(K=K, D=D, stamp_ns=stamp_to_ns(msg.header.stamp), frame_id=str(msg.header.frame_id),
                      width=width // bx, height=height // by, problem=problem, problem_kind=kind,
                      lens_problem=lens_problem)


@dataclass
class Problem:
    key: str          # groups repeats of the same cause, for throttling
    text: str
    skip: bool        # True: the frame cannot be processed; False: a warning only


@dataclass
class Match:
    intrinsics: Intrinsics | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.intrinsics is not None and not any(p.skip for p in self.problems)


class CameraInfoSync:
    """Holds received CameraInfos per frame_id and pairs an image (stamp, frame_id, size) with one
    of its own camera: an image is never placed with another camera's intrinsics.

    latest: the newest CameraInfo of the image's frame_id. Never blocks; an old CameraInfo only
            warns (a driver that publishes it once, latched, is normal).
    exact:  the CameraInfo of the image's frame_id with the image's exact stamp, from a buffer of
            the last `buffer` ones.
    A frame without a CameraInfo of its frame_id is skipped, naming both ids, unless `any_frame`
    (for drivers whose ids disagree) lets the newest CameraInfo of any frame stand in, with a
    warning. Problems are keyed by cause *and* image frame, so one camera's trouble never
    throttles another's.
    Thread-safe: `add` runs on the executor thread, `match` on the inference thread.
    """

    def __init__(self, topic: str = "camera_info", policy: str = "latest", stale_after: float = 5.0,
                 buffer: int = 30, any_frame: bool = False) -> None:
        self.topic = topic
        self.policy = policy
        self.stale_after = stale_after
        self.any_frame = any_frame
        self._latest: dict[str, Intrinsics] = {}
        self._newest: Intrinsics | None = None
        self._recent: deque[Intrinsics] = deque(maxlen=buffer)
        self._lock = threading.Lock()
        self.received = 0

    @property
    def policy(self) -> str:
        return self._policy

    @policy.setter
    def policy(self, value: str) -> None:
        if value not in SYNC_POLICIES:
            raise ValueError(f"camera_info_sync must be one of {SYNC_POLICIES}, got {value!r}")
        self._policy = value

    def add(self, info: Intrinsics) -> None:
        with self._lock:
            self.received += 1
            self._latest[info.frame_id] = info
            self._newest = info
            self._recent.append(info)

    def reset(self) -> None:
        with self._lock:
            self._latest.clear()
            self._newest = None
            self._recent.clear()

    def has_exact(self, stamp_ns: int, frame_id: str) -> bool:
        with self._lock:
            return any(i.stamp_ns == stamp_ns and (self.any_frame or i.frame_id == frame_id) for i in self._recent)

    def match(self, stamp_ns: int, frame_id: str, width: int = 0, height: int = 0,
              topic_has_publishers: bool | None = None) -> Match:
        with self._lock:
            newest, same_frame, frames = self._newest, self._latest.get(frame_id), sorted(self._latest)
            candidates = [i for i in self._recent if self.any_frame or i.frame_id == frame_id]
        if newest is None:
            hint = "" if topic_has_publishers is None else (
                " (the topic has no publisher)" if not topic_has_publishers else " (the topic has a publisher)")
            return Match(None, [Problem("no_info", (
                f"no CameraInfo on {self.topic} yet{hint} -- is the camera driver publishing it? "
                f"Remap camera_info:=<camera>/camera_info. Skipping frames until one arrives."), True)])

        problems: list[Problem] = []
        if self.policy == "exact":
            exact = [i for i in candidates if i.stamp_ns == stamp_ns]
            info = next((i for i in exact if i.frame_id == frame_id), exact[0] if exact else None)
            if info is None:
                nearest = min((abs(i.stamp_ns - stamp_ns) for i in candidates), default=None)
                gap = "" if nearest is None else f"; the nearest of frame '{frame_id}' is {nearest / 1e6:.1f} ms away"
                return Match(None, [Problem(f"no_exact:{frame_id}", (
                    f"no CameraInfo on {self.topic} for frame '{frame_id}' with the image's stamp "
                    f"{format_stamp(stamp_ns)} (camera_info_sync: exact{gap}); skipping the frame. Use "
                    "camera_info_sync:=latest unless the intrinsics change per frame"), True)])
        else:
            info = same_frame or (newest if self.any_frame else None)
            if info is None:
                return Match(None, [Problem(f"foreign_frame:{frame_id}", (
                    f"no CameraInfo on {self.topic} for the image's frame '{frame_id}' (CameraInfo "
                    f"received for: {', '.join(repr(f) for f in frames)}); skipping the frame rather than "
                    "placing hands with another camera's intrinsics. Remap camera_info:= to this camera's "
                    "camera_info topic, or, if the driver stamps image and CameraInfo with different ids, "
                    "set camera_info_any_frame:=true"), True)])
            age = (stamp_ns - info.stamp_ns) / 1e9
            if self.stale_after > 0 and age > self.stale_after:
                problems.append(Problem(f"stale:{frame_id}", (
                    f"the newest CameraInfo of frame '{info.frame_id}' on {self.topic} is {age:.1f} s older "
                    f"than the image (camera_info_timeout: {self.stale_after:g} s); using it anyway -- fine "
                    "if the driver publishes it once (latched), otherwise check that it still runs"), False))

        if info.frame_id != frame_id:
            problems.append(Problem(f"frame_id:{frame_id}", (
                f"using CameraInfo of frame '{info.frame_id}' for an image of frame '{frame_id}' "
                "(camera_info_any_frame: true); results are published in the image's frame"), False))
        if width and height and info.width and info.height and (info.width, info.height) != (width, height):
            problems.append(Problem(f"size:{frame_id}", (
                f"CameraInfo of frame '{info.frame_id}' is for {info.width}x{info.height} px (after its "
                f"binning and roi) but the image is {width}x{height} px; the intrinsics probably belong to "
                "another resolution (3D will be off). Remap camera_info:= to the matching stream"), False))
        if info.lens_problem:
            problems.append(Problem(f"distortion:{info.frame_id}", f"{self.topic}: {info.lens_problem}", True))
        if info.problem:
            problems.append(Problem(f"bad_K:{info.problem_kind}:{info.frame_id}", (
                f"unusable camera intrinsics on {self.topic} (frame '{info.frame_id}'): "
                f"{info.problem}; skipping the frame. Calibrate the camera or fix its driver"), True))
        return Match(info, problems)


@dataclass(frozen=True)
class DepthFrame:
    """One received depth image, kept as the message: it is converted (`ros/image.py`) by the
    inference thread, and only when a colour frame uses it."""

    stamp_ns: int
    frame_id: str
    width: int
    height: int
    encoding: str
    msg: Any


@dataclass
class DepthMatch:
    depth: DepthFrame | None
    problem: Problem | None = None    # why there is no depth for the frame (never skips it)
    offset_ns: int = 0                # depth stamp - colour stamp of the match


class DepthSync:
    """Pairs a colour frame with the aligned depth image of its stamp: the exact stamp, else the
    nearest within `tolerance` seconds, from the last `buffer` depth images of each frame_id.

    An aligned depth image (RealSense aligned_depth_to_color and the like) carries the colour
    image's frame_id and size; one of another frame or size is not aligned to this image, so it
    is never used, and the frame is placed from RGB alone with a Problem naming both (never
    `skip`: depth only improves a placement RGB already gives). Problems are keyed by cause and
    colour frame, for throttling. Thread-safe: `add` runs on the executor thread, `match` on the
    inference thread.
    """

    def __init__(self, topic: str = "depth", tolerance: float = 0.02, buffer: int = 10, max_frames: int = 8,
                 remap_hint: str = "remap depth:=<camera>/aligned_depth_to_color/image_raw") -> None:
        self.topic = topic
        self.tolerance = tolerance
        self.remap_hint = remap_hint
        self._buffer = buffer
        self._max_frames = max_frames
        # frame_id -> its newest depth images; insertion order = least recently fed first
        self._frames: dict[str, deque[DepthFrame]] = {}
        self._last: DepthFrame | None = None
        self._lock = threading.Lock()
        self.received = 0

    def add(self, depth: DepthFrame) -> None:
        with self._lock:
            self.received += 1
            self._last = depth
            recent = self._frames.pop(depth.frame_id, None)
            if recent is None:
                recent = deque(maxlen=self._buffer)
                # a publisher that changes frame_id per message must not grow this without bound
                while len(self._frames) >= self._max_frames:
                    del self._frames[next(iter(self._frames))]
            recent.append(depth)
            self._frames[depth.frame_id] = recent

    def reset(self) -> None:
        with self._lock:
            self._frames.clear()
            self._last = None

    def may_still_come(self, stamp_ns: int, frame_id: str) -> bool:
        """Whether a depth image of this stamp may still be on its way: images of this frame are
        arriving, but none at or after the stamp yet (depth arrives in stamp order)."""
        with self._lock:
            recent = self._frames.get(frame_id)
            return bool(recent) and recent[-1].stamp_ns < stamp_ns and not any(
                d.stamp_ns == stamp_ns for d in recent)

    def match(self, stamp_ns: int, frame_id: str, width: int, height: int,
              topic_has_publishers: bool | None = None) -> DepthMatch:
        tolerance_ns = int(round(max(0.0, self.tolerance) * 1e9))
        with self._lock:
            recent = list(self._frames.get(frame_id, ()))
            others = {f: [d.stamp_ns for d in q] for f, q in self._frames.items() if f != frame_id}
            last = self._last
        rgb_only = "placing the hands from RGB alone"
        if last is None:
            hint = "" if topic_has_publishers is None else (
                " (the topic has no publisher)" if not topic_has_publishers else " (the topic has a publisher)")
            return DepthMatch(None, Problem("depth_none", (
                f"no depth image on {self.topic} yet{hint}; {rgb_only}. Is the depth camera streaming? Else "
                f"{self.remap_hint} (a depth image aligned to the colour image)"), False))
        best = min(recent, key=lambda d: abs(d.stamp_ns - stamp_ns), default=None)
        offset = best.stamp_ns - stamp_ns if best is not None else 0
        if best is None or abs(offset) > tolerance_ns:
            # A depth image of another frame at this time is the likelier cause than a late one.
            in_time = [f for f, stamps in others.items() if any(abs(t - stamp_ns) <= tolerance_ns for t in stamps)]
            if best is None or in_time:
                named = in_time or list(others)
                return DepthMatch(None, Problem(f"depth_frame:{frame_id}", (
                    f"no depth image on {self.topic} for the colour image's frame '{frame_id}' (depth images "
                    f"{'of this time ' if in_time else ''}are of frame {', '.join(repr(f) for f in named)}); "
                    f"{rgb_only}. A depth image of another frame is not aligned to this one: use the depth stream "
                    "aligned to the colour camera (its frame_id is the colour optical frame; e.g. RealSense "
                    f"align_depth.enable:=true): {self.remap_hint}"), False))
            side = "after" if offset > 0 else "before"
            return DepthMatch(None, Problem(f"depth_stamp:{frame_id}", (
                f"no depth image on {self.topic} of frame '{frame_id}' within depth_tolerance "
                f"({self.tolerance * 1e3:g} ms) of the colour stamp {format_stamp(stamp_ns)}: the nearest is "
                f"{abs(offset) / 1e6:.1f} ms {side} it; {rgb_only}. Check that colour and depth run at the same "
                "rate and share a clock (RealSense: enable_sync:=true), or raise depth_tolerance"), False))
        if (best.width, best.height) != (width, height):
            return DepthMatch(None, Problem(f"depth_size:{frame_id}", (
                f"the depth image of frame '{frame_id}' on {self.topic} is {best.width}x{best.height} px but the "
                f"colour image is {width}x{height} px, so it is not aligned to it; {rgb_only}. Use the depth "
                "aligned to the colour stream (same size and intrinsics; e.g. RealSense "
                f"aligned_depth_to_color): {self.remap_hint}"), False), offset)
        return DepthMatch(best, None, offset)


class StampMonitor:
    """Notices time going backwards (a looping bag, a restarted driver, a reset sim clock)."""

    def __init__(self) -> None:
        self.last_ns: int | None = None

    def update(self, stamp_ns: int) -> int | None:
        """Records the stamp; returns the previous one when the new one is earlier, else None."""
        prev, self.last_ns = self.last_ns, stamp_ns
        if prev is not None and stamp_ns < prev:
            return prev
        return None


class Throttle:
    """At most one message per key per `period` seconds; counts what it held back, so the next
    message can say how many repeats it stands for."""

    def __init__(self, period: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def ready(self, key: str, period: float | None = None) -> tuple[bool, int]:
        """(whether to log now, how many were held back since the last one logged)."""
        now = self._clock()
        p = self.period if period is None else period
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < p:
                self._held[key] = self._held.get(key, 0) + 1
                return False, 0
            self._last[key] = now
            return True, self._held.pop(key, 0)


T = TypeVar("T")


class LatestMailbox(Generic[T]):
    """A one-slot mailbox: `put` replaces what is waiting (newest frame wins, nothing queues) and
    counts the replaced item as dropped; `get` blocks for the next item. `notify` wakes a waiter
    without an item (used when a CameraInfo arrives for a frame that waits for it)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Returns True when an unprocessed item was replaced (dropped)."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self.put_count += 1
            self.dropped += dropped
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """The waiting item (removing it), or None when closed or on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def pending(self) -> bool:
        with self._cond:
            return self._item is not None

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Waits until predicate() or a new item or close, for at most `timeout` s; returns
        predicate()'s last value."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                ok = predicate()
                left = deadline - time.monotonic()
                if ok or self._item is not None or self._closed or left <= 0:
                    return ok
                self._cond.wait(left)

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
