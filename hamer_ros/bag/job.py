"""Annotating recordings: the node's pipeline on a recording's own stamps, in time windows.

A recording is cut into windows of `window_s` seconds of log time. Each window starts
`warmup_s` earlier with the pipeline fresh: the warm-up frames give tracks, filters and the
detector's tracking their state and are not part of the result (their hands go to WARMUP_TOPIC of
the window's part file, where the merge joins the window's track ids to the previous window's).
A window depends on nothing outside it, so one process or many Ray workers produce the same
parts, and the merge makes the same file from them; a finished window is never redone when an
interrupted job is started again.

Per window: a reader thread decodes messages (CDR, images) into a bounded queue while the main
thread pairs each colour image with the CameraInfo of its frame id and its aligned depth image (as
the node does: sync.CameraInfoSync, sync.DepthSync), runs the frames through HandPipeline.batch
(one pipeline per camera frame id) and writes the results under the image's header and log time.
"""
from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..messages import tf_hands
from ..ros.image import ImageConversionError, compressed_to_rgb, depth_image_to_metres, image_to_rgb
from ..ros.sync import CameraInfoSync, DepthFrame, DepthSync, intrinsics_from_camera_info, stamp_to_ns
from .output import (FACES_TOPIC, HAND_ARRAY, HANDS_TOPIC, MESH_FACES, OVERLAY_TOPIC, TF_MESSAGE, TF_TOPIC,
                     WARMUP_TOPIC, COMPRESSED_IMAGE, McapOut, hand_array, header, jpeg_image, mesh_faces,
                     tf_message)
from .recording import Message, Recording, decode, open_recording

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
# How long (log time) a colour image waits for its depth image and CameraInfo to be read: recorders
# write them in arrival order, and a camera's streams arrive a few milliseconds apart.
PAIRING_WAIT_NS = 200_000_000
# Most decoded messages waiting between the reader thread and the pipeline (memory bound).
QUEUE_SIZE = 16
JOB_METADATA = "hamer_ros.job"


class BagError(RuntimeError):
    """A job that cannot run: the message says why and what to do."""


@dataclass(frozen=True)
class Settings:
    """Everything that decides a job's output (its fingerprint: a part of another job is not reused)."""

    pipeline: dict[str, Any]            # settings.pipeline_config's input (the node's parameter names)
    image_topic: str = ""               # empty: found in the recording
    depth_topic: str = ""               # empty: an aligned depth topic if the recording has one; "none": no depth
    image_is_rectified: bool = False
    batch: int = 8
    overlay: bool = False
    overlay_quality: int = 80
    publish_vertices: bool = True
    window_s: float = 60.0
    warmup_s: float = 2.0
    # CPU threads of each process's torch (0: torch's default, all cores). Sums over another
    # number of threads round differently, and tracking carries that on: the same count gives
    # the same file from one process and from Ray workers, to the last bit.
    threads: int = 0

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Topics:
    images: tuple[str, ...]
    camera_infos: tuple[str, ...]
    depth: tuple[str, ...]
    refused: dict[str, str] = field(default_factory=dict)     # a named topic not used, and why


def choose_topics(rec: Recording, image: str = "", depth: str = "") -> Topics:
    """The colour image topic(s) (given, else every image topic that is not depth, a raw one
    preferred to its /compressed twin), every CameraInfo topic (pairing is by frame id, so cameras
    never mix) and the depth topic (given, else those named aligned depth; "none": none)."""
    refused: dict[str, str] = {}
    kinds = (IMAGE, COMPRESSED)
    if image:
        if image not in rec.topics:
            found = sorted(t for t, ty in rec.topics.items() if ty in kinds)
            raise BagError(f"{rec.path}: no topic {image} (image topics: {', '.join(found) or 'none'}); "
                           "pass --image with one of them")
        images = [image] if rec.topics[image] in kinds else []
        if not images:
            refused[image] = f"{image} is {rec.topics[image] or 'of unknown type'}, not an Image or CompressedImage"
    else:
        candidates = sorted(t for t, ty in rec.topics.items()
                            if ty in kinds and "depth" not in t.lower() and "debug_image" not in t)
        images = [t for t in candidates if not (t.endswith("/compressed") and t[: -len("/compressed")] in candidates)]
        if not images:
            listed = ", ".join(f"{t} ({ty})" for t, ty in sorted(rec.topics.items())) or "no topics"
            raise BagError(f"{rec.path}: no colour image topic found ({listed}); pass --image TOPIC")
    infos = sorted(t for t, ty in rec.topics.items() if ty == CAMERA_INFO and rec.counts.get(t, 1) > 0)
    if depth == "none":
        depths: list[str] = []
    elif depth:
        if rec.topics.get(depth) != IMAGE:
            refused[depth] = (f"{depth} is {rec.topics.get(depth) or 'not in the recording'}, not an Image: "
                              "the hands are placed from RGB alone")
            depths = []
        else:
            depths = [depth]
    else:
        depths = sorted(t for t, ty in rec.topics.items() if ty == IMAGE and "depth" in t.lower() and "align" in t.lower())
    return Topics(tuple(images), tuple(infos), tuple(depths), refused)


@dataclass(frozen=True)
class Window:
    recording: str
    index: int
    start_ns: int
    end_ns: int           # exclusive; the last window ends after the recording's last message
    warmup_ns: int        # where its frames start (the warm-up's start)

    @property
    def name(self) -> str:
        return f"{hashlib.sha256(self.recording.encode()).hexdigest()[:8]}-{self.index:05d}"


def plan_windows(recordings: list[Recording], window_s: float, warmup_s: float) -> list[Window]:
    out = []
    step, warm = int(window_s * 1e9), int(warmup_s * 1e9)
    for rec in recordings:
        start, k = rec.start_ns, 0
        while True:
            end = start + step
            last = end > rec.end_ns
            out.append(Window(str(rec.path), k, start, rec.end_ns + 1 if last else end, max(rec.start_ns, start - warm)))
            if last:
                break
            start, k = end, k + 1
    return out


@dataclass
class WindowStats:
    """What one window did. frames: colour images of the window (not its warm-up); annotated:
    those written; skipped: reason -> count."""

    frames: int = 0
    annotated: int = 0
    hands: int = 0
    warmup_frames: int = 0
    skipped: Counter = field(default_factory=Counter)
    pipeline_ms: float = 0.0

    def add(self, other: WindowStats) -> None:
        self.frames += other.frames
        self.annotated += other.annotated
        self.hands += other.hands
        self.warmup_frames += other.warmup_frames
        self.skipped.update(other.skipped)
        self.pipeline_ms += other.pipeline_ms


# ----------------------------------------------------------------------------------------- reading

@dataclass
class _Image:
    log_ns: int
    stamp_ns: int
    frame_id: str
    rgb: np.ndarray | None
    error: str = ""


def _decoded(rec: Recording, topics: Topics, window: Window) -> Iterator[tuple[str, Any]]:
    """("info", Intrinsics) | ("depth", DepthFrame) | ("image", _Image) | ("bad", reason) per
    message of the window, decoded."""
    wanted = set(topics.images) | set(topics.camera_infos) | set(topics.depth) | set(topics.refused)
    for m in rec.messages(wanted, window.warmup_ns, window.end_ns):
        yield _decode_one(m, topics)


def _decode_one(m: Message, topics: Topics) -> tuple[str, Any]:
    if m.topic in topics.refused:
        return "bad", topics.refused[m.topic]
    try:
        msg = decode(m)
    except Exception as e:  # noqa: BLE001 -- rosbags raises various errors for broken CDR
        return ("image", _Image(m.log_ns, 0, "", None, f"undecodable {m.msgtype} message ({type(e).__name__})")) \
            if m.topic in topics.images else ("bad", f"undecodable {m.msgtype} on {m.topic}")
    if m.topic in topics.camera_infos:
        return "info", msg
    h = msg.header
    if m.topic in topics.depth:
        return "depth", DepthFrame(stamp_to_ns(h.stamp), str(h.frame_id), int(msg.width), int(msg.height),
                                   str(msg.encoding), msg)
    try:
        rgb = compressed_to_rgb(msg) if m.msgtype == COMPRESSED else image_to_rgb(msg)
        return "image", _Image(m.log_ns, stamp_to_ns(h.stamp), str(h.frame_id), rgb)
    except ImageConversionError as e:
        return "image", _Image(m.log_ns, stamp_to_ns(h.stamp), str(h.frame_id), None, f"unusable image: {e}")


def _prefetch(items: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """The items, decoded by a thread while the caller works (OpenCV and NumPy release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
    stop = threading.Event()
    end = object()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 -- handed to the consumer
            q.put(("error", e))
        q.put(end)

    thread = threading.Thread(target=run, name="bag-reader", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not end:
            if item[0] == "error":
                raise item[1]
            yield item
    finally:
        stop.set()
        while thread.is_alive():     # unblock a put() so the thread sees `stop`
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


# ----------------------------------------------------------------------------------------- a window

class Annotator:
    """Runs windows in one process: the model is loaded once; one HandPipeline per camera frame
    id, started afresh for each window."""

    def __init__(self, settings: Settings, camera_infos: dict[str, list[tuple[int, bytes]]] | None = None) -> None:
        from ..perception.pipeline import HandPipeline
        from ..settings import pipeline_config
        self.settings = settings
        self.cfg = pipeline_config({**settings.pipeline, "tracking": True})
        self._first = HandPipeline(self.cfg)       # loads the model: the other cameras' pipelines share it
        self._pipelines: dict[str, Any] = {}
        self._recordings: dict[str, Recording] = {}   # opened once (a cut file is scanned to open it)
        # recording -> its CameraInfos [(log_ns, CDR)] where they change: each window starts with
        # the ones recorded before it (a driver may publish CameraInfo once, at the start)
        self.camera_infos = camera_infos or {}

    @property
    def model_note(self) -> str:
        """Why there is no mesh (no or broken checkpoint), else empty."""
        return "" if self._first.has_mesh else (self._first.model_error or "no --checkpoint: joints only")

    def _pipeline(self, frame_id: str) -> Any:
        from ..perception.pipeline import HandPipeline
        if frame_id not in self._pipelines:
            self._pipelines[frame_id] = (self._first if not self._pipelines
                                         else HandPipeline(self.cfg, model=self._first.model))
        return self._pipelines[frame_id]

    def run_window(self, window: Window, part: Path, progress: Callable[[int], None] | None = None) -> WindowStats:
        """Annotates one window into the MCAP file `part` (written whole or not at all: a
        `.tmp` beside it until done)."""
        s = self.settings
        if window.recording not in self._recordings:
            self._recordings[window.recording] = open_recording(window.recording)
        rec = self._recordings[window.recording]
        topics = choose_topics(rec, s.image_topic, s.depth_topic)
        stats = WindowStats()
        for p in self._pipelines.values():
            p.restart()
        info_sync = CameraInfoSync(topic=", ".join(topics.camera_infos) or "(no CameraInfo topic)", stale_after=0.0)
        for log_ns, data in self.camera_infos.get(window.recording, []):
            if log_ns < window.warmup_ns:
                info_sync.add(intrinsics_from_camera_info(decode(Message("", CAMERA_INFO, log_ns, data)),
                                                          s.image_is_rectified))
        depth_sync = DepthSync(topic=", ".join(topics.depth)) if topics.depth else None
        tmp = part.with_name(part.name + ".tmp")
        out = McapOut(tmp)
        out.metadata(JOB_METADATA, {"fingerprint": s.fingerprint(), "window": window.name,
                                    "recording": window.recording})
        first = self._first
        if first.has_mesh:
            out.write(FACES_TOPIC, MESH_FACES, mesh_faces(first.faces_right, first.faces_left,
                                                          int(first.faces_right.max()) + 1), window.start_ns)
        tf_previous: dict[str, dict[str, int]] = {}
        pending: list[tuple[_Image, Any, np.ndarray | None]] = []
        waiting: deque[_Image] = deque()

        def skip(image: _Image, reason: str) -> None:
            if image.log_ns >= window.start_ns:
                stats.skipped[reason] += 1
                if progress:
                    progress(1)

        def release(image: _Image) -> None:
            if image.rgb is None:
                return skip(image, image.error)
            h, w = image.rgb.shape[:2]
            if not topics.camera_infos:
                return skip(image, "no CameraInfo topic in the recording (record the camera's camera_info "
                                   "with its images): hands cannot be placed without the intrinsics")
            match = info_sync.match(image.stamp_ns, image.frame_id, w, h)
            if not match.usable:
                return skip(image, _reason(next((p for p in match.problems if p.skip), None), "no CameraInfo"))
            depth = None
            if depth_sync is not None:
                dm = depth_sync.match(image.stamp_ns, image.frame_id, w, h)
                if dm.depth is not None:
                    try:
                        depth = depth_image_to_metres(dm.depth.msg)
                    except ImageConversionError:
                        depth = None
            pending.append((image, match.intrinsics, depth))
            if len(pending) >= s.batch:
                flush()

        def flush() -> None:
            from ..perception.pipeline import Frame
            t = time.perf_counter()
            results: dict[int, list] = {}
            by_camera: dict[str, list[int]] = {}
            for i, (image, _, _) in enumerate(pending):
                by_camera.setdefault(image.frame_id, []).append(i)
            for frame_id, idx in by_camera.items():
                frames = [Frame(pending[i][0].rgb, pending[i][1].K, pending[i][1].D, pending[i][0].stamp_ns * 1e-9,
                                pending[i][2]) for i in idx]
                for i, hands in zip(idx, self._pipeline(frame_id).batch(frames)):
                    results[i] = hands
            stats.pipeline_ms += (time.perf_counter() - t) * 1e3
            for i, (image, intr, _) in enumerate(pending):
                self._write(out, window, image, intr, results[i], tf_previous.setdefault(image.frame_id, {}), stats)
                if progress and image.log_ns >= window.start_ns:
                    progress(1)
            pending.clear()
            out.flush()

        try:
            for kind, item in _prefetch(_decoded(rec, topics, window)):
                if kind == "info":
                    info_sync.add(intrinsics_from_camera_info(item, s.image_is_rectified))
                elif kind == "depth" and depth_sync is not None:
                    depth_sync.add(item)
                elif kind == "image":
                    if item.log_ns >= window.start_ns:
                        stats.frames += 1
                    waiting.append(item)
                    # the image read now may be what an earlier one waited for; those older than
                    # the wait go on
                    while waiting and waiting[0].log_ns <= item.log_ns - PAIRING_WAIT_NS:
                        release(waiting.popleft())
                elif kind == "bad":
                    stats.skipped[item] += 1
            while waiting:
                release(waiting.popleft())
            if pending:
                flush()
        except BaseException:
            out.close()
            tmp.unlink(missing_ok=True)
            raise
        # last: a part with these stats is a finished window (run.py reuses it)
        out.metadata("hamer_ros.window_stats", {"json": json.dumps({
            "frames": stats.frames, "annotated": stats.annotated, "hands": stats.hands,
            "skipped": dict(stats.skipped)})})
        out.close()
        tmp.replace(part)
        return stats

    def _write(self, out: McapOut, window: Window, image: _Image, intr: Any, hands: list,
               tf_previous: dict[str, int], stats: WindowStats) -> None:
        s = self.settings
        hdr = header(image.stamp_ns, image.frame_id)
        if image.log_ns < window.start_ns:
            stats.warmup_frames += 1
            out.write(WARMUP_TOPIC, HAND_ARRAY, hand_array(hdr, hands, publish_vertices=False), image.log_ns)
            return
        stats.annotated += 1
        stats.hands += len(hands)
        out.write(HANDS_TOPIC, HAND_ARRAY, hand_array(hdr, hands, s.publish_vertices), image.log_ns)
        selected = tf_hands(hands, tf_previous)
        tf_previous.clear()
        tf_previous.update({side: h.track_id for side, h in selected.items()})
        if selected:
            out.write(TF_TOPIC, TF_MESSAGE, tf_message(hdr, selected), image.log_ns)
        if s.overlay:
            from ..perception.overlay import draw_hands
            # track numbers are the window's own until the merge: the overlay leaves them out
            unnumbered = [_without_id(h) for h in hands]
            out.write(OVERLAY_TOPIC, COMPRESSED_IMAGE,
                      jpeg_image(hdr, draw_hands(image.rgb, unnumbered, intr.K, intr.D), s.overlay_quality),
                      image.log_ns)


def _without_id(hand: Any) -> Any:
    from dataclasses import replace
    return replace(hand, track_id=-1)


def _reason(problem: Any, default: str) -> str:
    """A skip reason for the summary: the problem's cause, without the node's advice (which
    names its parameters), so that repeats group."""
    return re.split(r";| -- ", problem.text)[0] if problem is not None else default


def camera_info_changes(rec: Recording) -> list[tuple[int, bytes]]:
    """The recording's CameraInfo messages where they change (per frame id: size, K, D, P, binning,
    roi): what a window needs of the time before it."""
    topics = [t for t, ty in rec.topics.items() if ty == CAMERA_INFO]
    last: dict[str, bytes] = {}
    out = []
    for m in rec.messages(topics):
        try:
            msg = decode(m)
        except Exception:  # noqa: BLE001 -- a broken one is skipped; the window counts it
            continue
        key = repr((msg.width, msg.height, msg.distortion_model, np.asarray(msg.d).tolist(),
                    np.asarray(msg.k).tolist(), np.asarray(msg.p).tolist(), msg.binning_x, msg.binning_y,
                    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height)).encode()
        frame = str(msg.header.frame_id)
        if last.get(frame) != key:
            last[frame] = key
            out.append((m.log_ns, m.data))
    return out


