"""hand_mesh_node's counters and its /diagnostics status: what it received, processed, skipped
and why, how fast, and what needs a look. No rclpy here (diagnostic_msgs only)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from .dds_profile import PROFILE_FILE

# Warn when processing stays under this fraction of the input rate for this long.
SLOW_FRACTION = 0.5
SLOW_FOR_S = 5.0
# Compare the input rate with the camera's (from the stamps): below this fraction, frames are
# being lost before they reach the node.
MIN_INPUT_FRACTION = 0.5
RATE_SAMPLES = 30
STAGES = ("detect", "crop", "forward", "mano", "camera")


@dataclass
class Counts:
    received: int = 0
    processed: int = 0
    skipped: int = 0
    errors: int = 0
    with_depth: int = 0          # use_depth: frames given their depth image
    depth_fallbacks: int = 0     # use_depth: frames placed from RGB alone for want of one
    hands_on_depth: int = 0


@dataclass
class Snapshot:
    """The totals, and the window since the previous snapshot."""

    total: Counts
    window: Counts
    last_skip: str
    last_depth_problem: str
    errors_before: int            # total errors at the previous snapshot
    e2e_ms: list[float]
    overhead_ms: list[float]
    pipeline_ms: list[float]
    wait_ms: list[float]
    stages_ms: dict[str, float]   # summed over the window's processed frames
    recent_stamps: list[int]


class FrameStats:
    """Counters written by the executor and the inference thread, read by diagnostics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total, self._last_skip, self._last_depth_problem = Counts(), "", ""
        self._errors_before = 0
        self._recent: list[int] = []     # stamps of recently received frames, in arrival order
        self._new_window()

    def _new_window(self) -> None:
        self._window = Counts()
        self._e2e: list[float] = []
        self._overhead: list[float] = []
        self._pipeline: list[float] = []
        self._wait: list[float] = []
        self._stages: dict[str, float] = {}

    def _add(self, **counts: int) -> None:
        for c in (self._total, self._window):
            for k, v in counts.items():
                setattr(c, k, getattr(c, k) + v)

    def received(self, stamp_ns: int) -> None:
        with self._lock:
            self._add(received=1)
            self._recent = self._recent[-RATE_SAMPLES:] + [stamp_ns]

    def forget_stamps(self) -> None:
        """Stamps jumped back: the camera's rate is measured afresh."""
        with self._lock:
            self._recent = []

    def skipped(self, reason: str) -> None:
        with self._lock:
            self._add(skipped=1)
            self._last_skip = reason

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self._add(errors=1)
            self._last_skip = f"error: {error!r}"

    def depth(self, had_depth: bool, problem: str, hands_on_depth: int) -> None:
        """A frame's depth counters, in one update with its hands, so diagnostics never see a
        frame counted as having depth before its hands placed on depth are."""
        with self._lock:
            if had_depth:
                self._add(with_depth=1, hands_on_depth=hands_on_depth)
            else:
                self._add(depth_fallbacks=1)
                self._last_depth_problem = problem

    def processed(self, times: dict[str, float], stages: Any, e2e_ms: float) -> None:
        with self._lock:
            self._add(processed=1)
            self._e2e.append(e2e_ms)
            self._pipeline.append(times["pipeline"])
            self._overhead.append(times["convert"] + times["publish"])
            self._wait.append(times["wait"])
            for k, v in [(k, getattr(stages, k)) for k in STAGES] + list(stages.extra.items()):
                self._stages[k] = self._stages.get(k, 0.0) + v

    def totals(self) -> Counts:
        with self._lock:
            return replace(self._total)

    @property
    def last_skip(self) -> str:
        with self._lock:
            return self._last_skip

    @property
    def last_depth_problem(self) -> str:
        with self._lock:
            return self._last_depth_problem

    def take(self) -> Snapshot:
        """The counts, starting a new window."""
        with self._lock:
            snap = Snapshot(total=replace(self._total), window=self._window, last_skip=self._last_skip,
                            last_depth_problem=self._last_depth_problem, errors_before=self._errors_before,
                            e2e_ms=self._e2e, overhead_ms=self._overhead, pipeline_ms=self._pipeline,
                            wait_ms=self._wait, stages_ms=self._stages, recent_stamps=list(self._recent))
            self._errors_before = self._total.errors
            self._new_window()
            return snap


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


@dataclass
class NodeState:
    """What the status needs to know about the node besides its counters."""

    name: str                     # the node's fully qualified name
    active: bool
    enabled: bool
    idle_s: float                 # since the last image (or since the subscription began)
    image_timeout: float
    image_topic: str
    info_topic: str
    info_subscribed: bool
    infos_received: int
    info_has_publishers: bool | None
    use_depth: bool
    depth_topic: str
    depths_received: int
    frames_dropped: int
    tf_prefix: str
    settings: dict[str, Any] = field(default_factory=dict)   # backend, device, detector as configured


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


class Diagnostics:
    """Builds the status from a snapshot; remembers what a status must compare with the last one
    (how long processing has been slow, NaN hands already reported)."""

    def __init__(self) -> None:
        self._slow_since: float | None = None
        self._nonfinite_reported = 0

    def status(self, snap: Snapshot, node: NodeState, pipeline: Any, period: float, now: float) -> DiagnosticStatus:
        """OK while the node runs as configured (joints-only without a checkpoint is a mode, and
        inactive or paused are states a manager chose); WARN for problems that need a look (no
        images, frames lost before they reach the node, all frames skipped, e.g. for a missing or
        unusable CameraInfo, its publisher gone, frame errors, an engine fallback, processing far
        below the input rate, a configured model on the CPU by `auto`, hands with NaN left out);
        ERROR when frames fail and none comes out."""
        p, total, win = pipeline, snap.total, snap.window
        warnings, errors = [], []
        camera_hz, input_fraction = camera_rate(snap.recent_stamps)
        engine = getattr(p, "engine", None)
        if engine is not None and getattr(engine, "fallback_reason", ""):
            warnings.append(f"backend '{node.settings['backend']}' fell back to '{p.backend}': "
                            f"{engine.fallback_reason}")
        if node.active and node.enabled:
            if node.idle_s > node.image_timeout:
                warnings.append(f"no images on {node.image_topic} for {node.idle_s:.0f} s")
            elif input_fraction is not None and input_fraction < MIN_INPUT_FRACTION:
                warnings.append(f"only {100 * input_fraction:.0f}% of the camera's {camera_hz:.1f} Hz frames arrive "
                                "(lost in transport: large best-effort images need the Fast DDS profile "
                                f"{PROFILE_FILE} in the camera's process too)")
            if win.skipped and not win.processed:
                warnings.append(f"all frames skipped: {snap.last_skip}")
            elif node.info_subscribed and node.infos_received and node.info_has_publishers is False:
                warnings.append(f"CameraInfo publisher on {node.info_topic} is gone; using the last CameraInfo")
            if node.use_depth and win.depth_fallbacks and not win.with_depth:
                warnings.append(f"use_depth is on but no frame had its depth image: {snap.last_depth_problem}")
            if total.errors > snap.errors_before:
                failed = f"{total.errors - snap.errors_before} frame(s) failed: {snap.last_skip}"
                (errors if not win.processed else warnings).append(failed)    # nothing at all came out: a fault
            input_hz, processing_hz = win.received / period, win.processed / period
            if input_hz > 0 and processing_hz < SLOW_FRACTION * input_hz:
                if self._slow_since is None:
                    self._slow_since = now - period
                if now - self._slow_since >= SLOW_FOR_S:
                    warnings.append(f"processing {processing_hz:.1f} Hz of {input_hz:.1f} Hz input for "
                                    f"{now - self._slow_since:.0f} s: the model is the bottleneck on {p.device} "
                                    "(the newest frame is always taken; the rest are dropped)")
            else:
                self._slow_since = None
        nonfinite = int(getattr(p, "nonfinite_dropped", 0))
        if nonfinite > self._nonfinite_reported:
            warnings.append(f"{nonfinite - self._nonfinite_reported} hand(s) with NaN or infinite values "
                            "left out of every output")
        self._nonfinite_reported = nonfinite
        if p.has_mesh and node.settings["device"] == "auto" and str(p.device) == "cpu":
            warnings.append("device 'auto' found no CUDA: HaMeR (ViT-H) runs on the CPU, seconds per frame. "
                            "Install a CUDA build of torch, or set device: cpu to choose this")
        mode = "mesh" if p.has_mesh else "joints-only (no checkpoint configured)"
        if not node.active:
            state = "inactive"
        elif not node.enabled:
            state = "paused (~/enable false)"
        else:
            state = f"processing at {win.processed / period:.1f} Hz"
        level = DiagnosticStatus.ERROR if errors else DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK
        kv = [
            ("state", state),
            ("input rate [Hz]", f"{win.received / period:.2f}"),
            ("camera rate from stamps [Hz]", f"{camera_hz:.2f}" if camera_hz else "-"),
            ("processing rate [Hz]", f"{win.processed / period:.2f}"),
            ("frames received", total.received),
            ("frames processed", total.processed),
            ("frames dropped", node.frames_dropped),
            ("frames skipped", total.skipped),
            ("frame errors", total.errors),
            ("hands with NaN left out", nonfinite),
            ("last skip reason", snap.last_skip),
            ("end-to-end latency mean [ms]", f"{_mean(snap.e2e_ms):.1f}"),
            ("end-to-end latency max [ms]", f"{max(snap.e2e_ms, default=0.0):.1f}"),
            ("pipeline [ms]", f"{_mean(snap.pipeline_ms):.2f}"),
            ("node overhead [ms]", f"{_mean(snap.overhead_ms):.2f}"),
            ("mailbox wait [ms]", f"{_mean(snap.wait_ms):.2f}"),
        ]
        kv += [(f"stage {k} [ms]", f"{v / max(1, win.processed):.2f}") for k, v in snap.stages_ms.items()]
        kv += [
            ("device", str(p.device)),
            ("backend", p.backend),
            ("precision", p.engine.precision if p.engine is not None else "-"),
            ("model", "mesh" if p.has_mesh else "joints-only"),
            ("detector", node.settings["detector"]),
            ("camera infos received", node.infos_received),
            ("depth", node.depth_topic if node.use_depth else "off"),
            ("depth images received", node.depths_received),
            ("frames with depth", total.with_depth),
            ("frames without depth (fallback)", total.depth_fallbacks),
            ("hands placed on depth", total.hands_on_depth),
            ("last depth fallback reason", snap.last_depth_problem),
            ("tf prefix", node.tf_prefix),
        ]
        return DiagnosticStatus(level=level, name=f"{node.name}: hand mesh",
                                message="; ".join(errors + warnings + [f"{mode}, {state}"]),
                                hardware_id=str(getattr(p, "device", "")),
                                values=[KeyValue(key=k, value=str(v)) for k, v in kv])
