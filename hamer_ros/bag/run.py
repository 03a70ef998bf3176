"""`hamer-ros bag`: the job — plan the windows, run those not done (here or on Ray workers), merge
the parts into one MCAP in time order, say what happened.

Output: OUT.mcap appears only when complete (written as OUT.mcap.partial, then renamed). The
windows' parts live in OUT.mcap.parts/ until then: an interrupted job, started again with the
same arguments, reuses every finished window (parts of other settings are removed).
"""
from __future__ import annotations

import contextlib
import heapq
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .job import JOB_METADATA, Annotator, BagError, Settings, Window, WindowStats, camera_info_changes, \
    choose_topics, plan_windows
from ..ros.sync import stamp_to_ns
from .output import HAND_ARRAY, HANDS_TOPIC, FACES_TOPIC, WARMUP_TOPIC, McapOut
from .recording import RecordingError, open_recording, typestore

# A hand of a window's warm-up is the previous window's hand when they are of one side and their
# 2D keypoints lie this close (mean distance, a fraction of the hand's size in the image): the
# same detector on the same frame finds it in the same place, whatever the depth ramp or filter
# state of the fresh start did to its 3D position.
SAME_HAND = 0.2


@dataclass
class Summary:
    """stats: every window's (reused ones too); ran: those run by this call, over `seconds`."""

    out: Path
    windows: int
    windows_reused: int
    stats: WindowStats
    ran: WindowStats
    seconds: float
    recordings: int
    cut: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        s, r = self.stats, self.ran
        out = [f"annotated {s.annotated} of {s.frames} frame(s) in {self.recordings} recording(s), "
               f"{s.hands} hand(s) → {self.out}",
               f"{self.windows} window(s), {self.windows_reused} reused from an earlier run; this run: "
               f"{r.annotated} frame(s) and {r.warmup_frames} warm-up frame(s), "
               f"{r.pipeline_ms / max(1, r.annotated + r.warmup_frames):.1f} ms per frame in the pipeline, "
               f"{r.annotated / max(self.seconds, 1e-9):.1f} frames/s overall"]
        if s.skipped:
            out.append(f"skipped {sum(s.skipped.values())}: " +
                       "; ".join(f"{n} × {why}" for why, n in s.skipped.most_common()))
        out += [f"cut short: {c}" for c in self.cut]
        return out


def annotate(inputs: list[Path], out: Path, settings: Settings, ray_address: str = "", workers: int = 1,
             show_progress: bool = True) -> Summary:
    t0 = time.perf_counter()
    try:
        recordings = [open_recording(p) for p in inputs]
    except RecordingError as e:
        raise BagError(str(e)) from None
    # a wrong topic fails here, in one line, before any model loads
    topics = [choose_topics(rec, settings.image_topic, settings.depth_topic) for rec in recordings]
    windows = plan_windows(recordings, settings.window_s, settings.warmup_s)
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    done = _finished_parts(parts, settings, windows)
    todo = [w for w in windows if w.name not in done]
    stats = WindowStats()
    for w in windows:
        if w.name in done:
            stats.add(done[w.name])
    total = sum(rec.counts.get(t, 0) for rec, chosen in zip(recordings, topics) for t in chosen.images)
    camera_infos = {str(rec.path): camera_info_changes(rec) for rec in recordings} if todo else {}
    bar = _progress(total, stats.frames, show_progress)
    ran = WindowStats()
    try:
        if todo and ray_address:
            for st in _run_on_ray(ray_address, workers, settings, camera_infos, todo, parts, bar):
                ran.add(st)
        elif todo:
            with _threads(settings.threads):
                annotator = Annotator(settings, camera_infos)
                if settings.pipeline.get("checkpoint") and annotator.model_note:
                    raise BagError(f"cannot use the HaMeR weights: {annotator.model_note}")
                for w in todo:
                    ran.add(annotator.run_window(w, parts / f"{w.name}.mcap", bar.update))
    finally:
        bar.close()
    stats.add(ran)
    merge([parts / f"{w.name}.mcap" for w in windows], windows, out, settings)
    shutil.rmtree(parts, ignore_errors=True)
    cut = sorted({r.cut for r in recordings if r.cut})
    return Summary(out, len(windows), len(windows) - len(todo), stats, ran, time.perf_counter() - t0,
                   len(recordings), cut)


def _progress(total: int, initial: int, show: bool) -> Any:
    from tqdm import tqdm
    return tqdm(total=total or None, initial=initial, unit="frame", desc="annotating", disable=not show,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


def _finished_parts(parts: Path, settings: Settings, windows: list[Window]) -> dict[str, WindowStats]:
    """Window name -> its stats, for the parts a job with these settings finished; anything else
    in the folder (another job's parts, a window cut off mid-way) is removed."""
    from mcap.reader import make_reader
    names = {w.name for w in windows}
    done: dict[str, WindowStats] = {}
    for f in sorted(parts.iterdir()):
        ok = False
        if f.suffix == ".mcap" and f.stem in names:
            try:
                with open(f, "rb") as fh:
                    meta = {m.name: m.metadata for m in make_reader(fh).iter_metadata()}
                ok = (meta.get(JOB_METADATA, {}).get("fingerprint") == settings.fingerprint()
                      and "hamer_ros.window_stats" in meta)
                if ok:
                    done[f.stem] = _stats_from(meta["hamer_ros.window_stats"])
            except Exception:  # noqa: BLE001 -- unreadable: redone
                ok = False
        if not ok:
            f.unlink() if f.is_file() else shutil.rmtree(f, ignore_errors=True)
    return done


def _stats_from(meta: dict[str, str]) -> WindowStats:
    import json
    d = json.loads(meta["json"])
    return WindowStats(frames=d["frames"], annotated=d["annotated"], hands=d["hands"], warmup_frames=0,
                       skipped=Counter(d["skipped"]))


def _run_on_ray(address: str, workers: int, settings: Settings, camera_infos: dict, todo: list[Window],
                parts: Path, bar: Any) -> Iterator[WindowStats]:
    """The windows on `workers` Ray actors (one GPU each when the pipeline's device is a GPU),
    each loading the model once. The parts folder must be on storage every node sees."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise BagError("--ray needs Ray: pip install 'hamer_ros[ray]' (or pip install ray)") from None
    from ..perception.pipeline import resolve_device
    gpu = resolve_device(str(settings.pipeline.get("device", "auto"))).type == "cuda"
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                 log_to_driver=False, include_dashboard=False)
    try:
        actor = ray.remote(num_gpus=1 if gpu else 0, num_cpus=1)(_WindowActor)
        # by default the machine's cores shared among the workers (Ray gives a 1-CPU actor one thread)
        threads = settings.threads or max(1, _torch_threads() // max(1, workers))
        pool = ActorPool([actor.remote(settings, camera_infos, threads) for _ in range(max(1, workers))])
        for st in pool.map_unordered(lambda a, w: a.run.remote(w, str(parts / f"{w.name}.mcap")), todo):
            bar.update(st.frames)
            yield st
    finally:
        if started:
            ray.shutdown()


class _WindowActor:
    def __init__(self, settings: Settings, camera_infos: dict, threads: int) -> None:
        import torch
        torch.set_num_threads(threads)
        self.annotator = Annotator(settings, camera_infos)

    def run(self, window: Window, part: str) -> WindowStats:
        return self.annotator.run_window(window, Path(part))


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's CPU threads set to n (0: left as they are) while the job runs in this process."""
    import torch
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()



# ----------------------------------------------------------------------------------------- merge

def merge(part_paths: list[Path], windows: list[Window], out: Path, settings: Settings) -> None:
    """The parts as one MCAP in log-time order (recordings interleaved by time), each window's
    track ids joined to the previous window's through the warm-up frames they share."""
    tmp = out.with_name(out.name + ".partial")
    dest = McapOut(tmp)
    dest.metadata(JOB_METADATA, {"fingerprint": settings.fingerprint(),
                                 "recordings": ",".join(sorted({w.recording for w in windows}))})
    streams = []
    ids = Counter()      # "next": the next new track id, shared: ids are unique in the file
    for recording in sorted({w.recording for w in windows}):
        mine = [(p, w) for p, w in zip(part_paths, windows) if w.recording == recording]
        streams.append(_recording_stream(mine, settings.warmup_s, ids))
    faces = False
    for log_ns, topic, msgtype, data in heapq.merge(*streams, key=lambda m: m[0]):
        if topic == FACES_TOPIC:
            if faces:
                continue
            faces = True
        dest.write_cdr(topic, msgtype, data, log_ns)
    dest.close()
    os.replace(tmp, out)


def _recording_stream(parts: list[tuple[Path, Window]], warmup_s: float,
                      counter: Counter) -> Iterator[tuple[int, str, str, bytes]]:
    from mcap.reader import make_reader
    store = typestore()
    tail: dict[tuple[int, str], list[tuple[bool, int, np.ndarray]]] = {}   # the last window's last frames
    for path, window in parts:
        # the window's own track ids are per camera: (frame id, its id) -> the file's id
        votes: Counter = Counter()
        ids: dict[tuple[str, int], int] = {}
        new_tail: dict[tuple[int, str], list[tuple[bool, int, np.ndarray]]] = {}
        with open(path, "rb") as f:
            for schema, channel, msg in make_reader(f).iter_messages(log_time_order=True):
                if channel.topic == WARMUP_TOPIC:
                    arr = store.deserialize_cdr(msg.data, HAND_ARRAY)
                    before = tail.get((stamp_to_ns(arr.header.stamp), arr.header.frame_id), [])
                    for h in arr.hands:
                        match = _same_hand(h, before)
                        if match is not None and h.track_id >= 0:
                            votes[((arr.header.frame_id, h.track_id), match)] += 1
                    continue
                if channel.topic == HANDS_TOPIC:
                    if not ids and votes:
                        ids = _join(votes)
                    arr = store.deserialize_cdr(msg.data, HAND_ARRAY)
                    hands = []
                    for h in arr.hands:
                        if h.track_id >= 0:
                            own = (arr.header.frame_id, h.track_id)
                            if own not in ids:
                                ids[own] = counter["next"]
                                counter["next"] += 1
                            h = replace(h, track_id=ids[own])
                        hands.append(h)
                    arr = replace(arr, hands=hands)
                    key = (stamp_to_ns(arr.header.stamp), arr.header.frame_id)
                    if msg.log_time >= window.end_ns - int(warmup_s * 1e9):
                        new_tail[key] = [(h.side == 1, h.track_id, _keypoints(h)) for h in hands]
                    yield msg.log_time, channel.topic, HAND_ARRAY, bytes(store.serialize_cdr(arr, HAND_ARRAY))
                    continue
                yield msg.log_time, channel.topic, schema.name, bytes(msg.data)
        tail = new_tail


def _keypoints(h: Any) -> np.ndarray:
    return np.asarray(h.keypoints_2d, dtype=np.float64).reshape(21, 2)


def _same_hand(h: Any, before: list[tuple[bool, int, np.ndarray]]) -> int | None:
    """The previous window's track id of this warm-up hand, if one of its hands is this one."""
    best, best_d = None, SAME_HAND
    kp = _keypoints(h)
    for right, tid, other in before:
        size = max(float(np.ptp(other, axis=0).max()), 1.0)
        d = float(np.linalg.norm(kp - other, axis=1).mean()) / size
        if right == (h.side == 1) and tid >= 0 and d < best_d:
            best, best_d = tid, d
    return best


def _join(votes: Counter) -> dict[Any, int]:
    """a window's own track -> the previous window's id it was matched to most often, each taken once."""
    out: dict[Any, int] = {}
    taken: set[int] = set()
    for (local, previous), _ in votes.most_common():
        if local not in out and previous not in taken:
            out[local] = previous
            taken.add(previous)
    return out
