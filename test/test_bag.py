"""hamer-ros bag: recordings written here with rosbags' writer (raw and JPEG images, CameraInfo,
depth, broken frames), annotated, and the MCAP read back with the `mcap` reader."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the bag extra (rosbags, mcap) is not installed")
pytest.importorskip("mcap", reason="the bag extra (rosbags, mcap) is not installed")

from hamer_ros.bag.job import BagError, Settings, choose_topics, plan_windows  # noqa: E402
from hamer_ros.bag.recording import decode, open_recording  # noqa: E402
from hamer_ros.bag.run import annotate  # noqa: E402
from hamer_ros_testing.recordings import Camera, Plan, write_recording  # noqa: E402

K4 = (600.0, 600.0, 320.0, 240.0)


def photo_frames(examples: Path, n: int) -> list[np.ndarray]:
    """test1.jpg's two hands in a 640x480 view, moving 3 px a frame."""
    import cv2
    img = cv2.imread(str(examples / "test1.jpg"))[..., ::-1]
    return [np.ascontiguousarray(img[40 + k: 520 + k, 100 + 3 * k: 740 + 3 * k]) for k in range(n)]


def synthetic_frames(n: int) -> list[np.ndarray]:
    """Textured 640x480 frames that pan 3 px a frame (no photo needed): with fixed boxes and HaMeR
    (MESH below) every frame has two hands."""
    rng = np.random.default_rng(0)
    wide = (rng.integers(0, 255, (480, 640 + 3 * n, 3)) // 3 + 80).astype(np.uint8)
    return [np.ascontiguousarray(wide[:, 3 * k: 3 * k + 640]) for k in range(n)]


ROIS = [{"box": [100, 120, 240, 280], "side": "right"}, {"box": [380, 150, 500, 300], "side": "left"}]


@pytest.fixture
def mesh(tiny_checkpoint, mano_path) -> dict:
    """Pipeline settings: tiny HaMeR on fixed boxes."""
    return {"device": "cpu", "detector": "fixed", "rois": ROIS, "checkpoint": str(tiny_checkpoint),
            "mano": str(mano_path)}


def read_out(path: Path) -> dict[str, list]:
    """topic -> [(log_ns, message)] of an MCAP, with the mcap reader (the index must be whole)."""
    from mcap.reader import make_reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_JAZZY)
    out: dict[str, list] = {}
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics.message_count > 0
        for schema in summary.schemas.values():
            if schema.name.startswith("hamer_ros_msgs/"):
                # the file's own definitions (as Foxglove reads them), not this package's
                store.register(schema_types(schema.name, schema.data.decode(), get_types_from_msg))
        for schema, channel, msg in reader.iter_messages(log_time_order=True):
            out.setdefault(channel.topic, []).append((msg.log_time, store.deserialize_cdr(msg.data, schema.name)))
    return out


def schema_types(name: str, text: str, parse) -> dict:
    """The hamer_ros_msgs types of a ros2msg schema: the message, then '===' lines and 'MSG: pkg/Type'
    blocks of the types it uses."""
    import re
    blocks = re.split(r"^=+\n", text, flags=re.M)
    types = dict(parse(blocks[0], name))
    for block in blocks[1:]:
        head, _, body = block.partition("\n")
        pkg, typ = head.removeprefix("MSG: ").strip().split("/")[::2] if head.count("/") == 2 else head.removeprefix("MSG: ").strip().split("/")
        if pkg == "hamer_ros_msgs":
            types.update(parse(body, f"{pkg}/msg/{typ}"))
    return types


def raw_messages(path: Path) -> list[tuple[str, int, bytes]]:
    from mcap.reader import make_reader
    with open(path, "rb") as f:
        return [(c.topic, m.log_time, bytes(m.data)) for _, c, m in make_reader(f).iter_messages(log_time_order=True)]


def stamp(h) -> int:
    return h.stamp.sec * 10**9 + h.stamp.nanosec


def settings(**kw) -> Settings:
    base = dict(pipeline={"device": "cpu"}, batch=4, window_s=60.0, warmup_s=0.5)
    return Settings(**{**base, **kw})


# ---------------------------------------------------------------------------- topics and windows

def test_topics_are_found_and_a_named_topic_of_another_type_is_refused(tmp_path):
    frames = [np.zeros((48, 64, 3), np.uint8)] * 2
    rec = open_recording(write_recording(tmp_path / "a", Plan(frames, [1.0, 1.1], depth_m=0.5,
                                                              extra_topics={"/chatter": "hi"})))
    t = choose_topics(rec)
    assert t.images == ("/camera/color/image_raw",) and t.camera_infos == ("/camera/color/camera_info",)
    assert t.depth == ("/camera/aligned_depth_to_color/image_raw",)
    assert choose_topics(rec, depth="none").depth == ()
    refused = choose_topics(rec, image="/chatter")
    assert refused.images == () and "std_msgs/msg/String" in refused.refused["/chatter"]
    with pytest.raises(BagError, match=r"no topic /nope \(image topics: .*/camera/color/image_raw\)"):
        choose_topics(rec, image="/nope")
    jpeg = open_recording(write_recording(tmp_path / "b", Plan(frames, [1.0, 1.1], compressed=True)))
    assert choose_topics(jpeg).images == ("/camera/color/image_raw/compressed",)


def test_windows_cover_the_recording_once(tmp_path):
    frames = [np.zeros((48, 64, 3), np.uint8)] * 26
    rec = open_recording(write_recording(tmp_path / "a", Plan(frames, [5 + k / 10 for k in range(26)])))
    wins = plan_windows([rec], window_s=1.0, warmup_s=0.25)
    assert [w.index for w in wins] == [0, 1, 2]
    assert wins[0].start_ns == rec.start_ns and wins[-1].end_ns == rec.end_ns + 1
    assert all(a.end_ns == b.start_ns for a, b in zip(wins, wins[1:]))           # no gap, no overlap
    assert [w.start_ns - w.warmup_ns for w in wins] == [0, 250_000_000, 250_000_000]
    logs = [m.log_ns for m in rec.messages(["/camera/color/image_raw"])]
    assert sum(len([t for t in logs if w.start_ns <= t < w.end_ns]) for w in wins) == len(logs) == 26


# ---------------------------------------------------------------------------- the output

def test_a_recording_annotated_frame_by_frame_as_the_pipeline_does(tmp_path, examples):
    """Every frame accounted for (annotated or skipped with its reason), each HandArray under its
    image's exact stamp and frame id and log time, TF beside it, and the hands those of
    HandPipeline on the same frames with the same stamps and intrinsics."""
    from hamer_ros.perception import HandPipeline
    from hamer_ros.settings import pipeline_config
    frames = photo_frames(examples, 12)
    stamps = [100.0 + k / 15 for k in range(12)]
    cam = Camera(frame_id="cam_optical", K=K4)
    rec_path = write_recording(tmp_path / "rec", Plan(frames, stamps, camera=cam, broken={4}))
    s = settings(batch=4)
    summary = annotate([rec_path], tmp_path / "hands.mcap", s, show_progress=False)
    assert summary.stats.frames == 12 and summary.stats.annotated == 11
    assert sum(summary.stats.skipped.values()) == 1
    assert "truncated" in next(iter(summary.stats.skipped))
    out = read_out(tmp_path / "hands.mcap")
    hands_msgs = out["/hands"]
    good = [k for k in range(12) if k != 4]
    assert [stamp(m.header) for _, m in hands_msgs] == [round(stamps[k] * 1e9) for k in good]
    assert all(m.header.frame_id == "cam_optical" for _, m in hands_msgs)
    assert [log for log, _ in hands_msgs] == [round(stamps[k] * 1e9) + 3_000_000 for k in good]
    tf = {stamp(m.transforms[0].header): m for _, m in out["/tf"]}
    direct = HandPipeline(pipeline_config({**s.pipeline, "tracking": True}))
    K = np.array([[K4[0], 0, K4[2]], [0, K4[1], K4[3]], [0, 0, 1]])
    ids: dict[int, int] = {}
    for (_, msg), k in zip(hands_msgs, good):
        want = direct(frames[k], K, None, stamp=round(stamps[k] * 1e9) * 1e-9)
        assert len(msg.hands) == len(want) == 2
        for got, h in zip(msg.hands, want):
            np.testing.assert_allclose([(p.x, p.y, p.z) for p in got.joints], h.joints, atol=1e-9)
            assert (got.side == 1) == h.is_right and ids.setdefault(got.track_id, h.track_id) == h.track_id
        t = tf[stamp(msg.header)]
        assert {x.header.frame_id for x in t.transforms} == {"cam_optical"}
        assert {x.child_frame_id for x in t.transforms} == {"right_hand/wrist"}
    assert len(ids) == 2


def test_two_cameras_in_one_recording_each_with_its_own_intrinsics(tmp_path, examples):
    """Two cameras (own namespace, frame id, size and K) in one recording: each image's hands are
    placed with its own camera's CameraInfo and written under its frame id, as HandPipeline does
    with that camera alone; neither camera's tracks or ids leak into the other's."""
    from hamer_ros.perception import HandPipeline
    from hamer_ros.settings import pipeline_config
    left, right = photo_frames(examples, 6), [f[:400, :560].copy() for f in photo_frames(examples, 6)]
    cams = [Camera(frame_id="left_optical", K=(600.0, 600.0, 320.0, 240.0), ns="/left"),
            Camera(frame_id="right_optical", K=(450.0, 450.0, 280.0, 200.0), ns="/right")]
    stamps = [5 + k / 10 for k in range(6)]
    rec = write_recording(tmp_path / "rec", [Plan(left, stamps, camera=cams[0]),
                                             Plan(right, [t + 0.01 for t in stamps], camera=cams[1])])
    s = settings()
    summary = annotate([rec], tmp_path / "o.mcap", s, show_progress=False)
    assert summary.stats.annotated == 12
    by_frame: dict[str, list] = {}
    for _, m in read_out(tmp_path / "o.mcap")["/hands"]:
        by_frame.setdefault(m.header.frame_id, []).append(m)
    for cam, frames, t0 in ((cams[0], left, 0.0), (cams[1], right, 0.01)):
        fx, fy, cx, cy = cam.K
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        direct = HandPipeline(pipeline_config({**s.pipeline, "tracking": True}))
        msgs = by_frame[cam.frame_id]
        assert [stamp(m.header) for m in msgs] == [round((t + t0) * 1e9) for t in stamps]
        for m, img, t in zip(msgs, frames, stamps):
            want = direct(img, K, None, stamp=round((t + t0) * 1e9) * 1e-9)
            assert len(m.hands) == len(want) > 0
            for got, h in zip(m.hands, want):
                np.testing.assert_allclose([(p.x, p.y, p.z) for p in got.joints], h.joints, atol=1e-9)
    ids = [{h.track_id for m in by_frame[c.frame_id] for h in m.hands} for c in cams]
    assert not ids[0] & ids[1]


def test_compressed_sqlite3_with_one_camera_info_and_depth_in_windows(tmp_path, examples):
    """JPEG frames in a sqlite3 bag whose driver published CameraInfo once: every window (not
    only the first) has the intrinsics; the aligned depth places the hands (placement rgbd)."""
    frames = photo_frames(examples, 20)
    stamps = [3.0 + k / 10 for k in range(20)]
    rec = write_recording(tmp_path / "rec", Plan(frames, stamps, compressed=True, camera_info_once=True,
                                                 depth_m=0.8, broken={13}), storage="sqlite3")
    summary = annotate([rec], tmp_path / "o.mcap", settings(window_s=0.5, warmup_s=0.5), show_progress=False)
    assert summary.windows == 4 and summary.stats.frames == 20 and summary.stats.annotated == 19
    assert list(summary.stats.skipped) == ["unusable image: the " + next(iter(summary.stats.skipped)).split("the ", 1)[1]]
    assert "do not decode" in next(iter(summary.stats.skipped))
    out = read_out(tmp_path / "o.mcap")
    msgs = [m for _, m in out["/hands"]]
    assert len(msgs) == 19 and all(len(m.hands) == 2 for m in msgs)
    assert all(h.placement == 1 for m in msgs[3:] for h in m.hands)       # rgbd once the track settled
    # two tracks through the four windows: their ids are joined at each window's start
    assert Counter(h.track_id for m in msgs for h in m.hands) == Counter({0: 19, 1: 19})


def test_meshes_and_their_latched_faces_with_a_checkpoint(tmp_path, mesh):
    """With HaMeR: every hand carries its 778 vertices, and the triangles are written once, on a
    channel that `ros2 bag play` offers latched (rosbag2's QoS metadata)."""
    import yaml
    from mcap.reader import make_reader
    frames = synthetic_frames(6)
    rec = write_recording(tmp_path / "rec", Plan(frames, [1 + k / 10 for k in range(6)]))
    s = settings(pipeline=mesh, window_s=0.3, warmup_s=0.2)
    summary = annotate([rec], tmp_path / "o.mcap", s, show_progress=False)
    assert summary.windows == 2 and summary.stats.annotated == 6
    out = read_out(tmp_path / "o.mcap")
    assert all(len(m.hands) == 2 for _, m in out["/hands"])
    assert all(h.has_mesh and len(h.vertices) == 778 * 3 for _, m in out["/hands"] for h in m.hands)
    # two tracks through both windows: the second window's ids joined to the first's
    assert Counter(h.track_id for _, m in out["/hands"] for h in m.hands) == Counter({0: 6, 1: 6})
    (_, faces), = out["/hands/mesh_faces"]
    assert faces.num_vertices == 778 and len(faces.right) == len(faces.left) == 1538 * 3
    with open(tmp_path / "o.mcap", "rb") as f:
        channel, = [c for c in make_reader(f).get_summary().channels.values() if c.topic == "/hands/mesh_faces"]
    (qos,) = yaml.safe_load(channel.metadata["offered_qos_profiles"])
    assert (qos["durability"], qos["reliability"], qos["history"], qos["depth"]) == (1, 1, 1, 1)
    with pytest.raises(BagError, match="cannot use the HaMeR weights"):
        broken = tmp_path / "broken.ckpt"
        broken.write_bytes(b"not a checkpoint")
        annotate([rec], tmp_path / "b.mcap", settings(pipeline={"device": "cpu", "checkpoint": str(broken)}),
                 show_progress=False)


def test_a_recording_cut_mid_chunk_is_annotated_up_to_the_cut(tmp_path, mesh):
    frames = synthetic_frames(10)
    rec = write_recording(tmp_path / "rec", Plan(frames, [1 + k / 10 for k in range(10)]))
    mcap = next(rec.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(len(data) * 0.6)])
    (rec / "metadata.yaml").unlink()            # a recorder killed before writing it
    summary = annotate([rec], tmp_path / "o.mcap", settings(pipeline=mesh), show_progress=False)
    assert summary.cut and "breaks off after" in summary.cut[0]
    n = len(read_out(tmp_path / "o.mcap")["/hands"])
    assert 3 <= n < 10 and summary.stats.annotated == n
    assert any("cut short" in line for line in summary.lines())


def test_frames_without_their_camera_info_are_counted_and_the_rest_annotated(tmp_path, mesh):
    """CameraInfo from frame 5 on (10 Hz): frames more than the pairing wait (0.2 s) before it are
    skipped, naming the cause; a recording with no CameraInfo at all has every frame skipped."""
    frames = synthetic_frames(8)
    late = write_recording(tmp_path / "late", Plan(frames, [1 + k / 10 for k in range(8)], camera_info_from=5))
    summary = annotate([late], tmp_path / "o.mcap", settings(pipeline=mesh), show_progress=False)
    assert summary.stats.annotated == 5 and summary.stats.frames == 8
    (why, n), = summary.stats.skipped.items()
    assert n == 3 and why.startswith("no CameraInfo on /camera/color/camera_info yet"), why
    assert [stamp(m.header) for _, m in read_out(tmp_path / "o.mcap")["/hands"]] == \
        [round((1 + k / 10) * 1e9) for k in range(3, 8)]
    none = write_recording(tmp_path / "none", Plan(frames[:3], [1.0, 1.1, 1.2], camera_info_from=-1))
    summary = annotate([none], tmp_path / "n.mcap", settings(pipeline=mesh), show_progress=False)
    assert summary.stats.annotated == 0 and summary.stats.skipped == Counter(
        {"no CameraInfo topic in the recording (record the camera's camera_info with its images): hands cannot be "
         "placed without the intrinsics": 3})


def test_a_topic_of_another_type_is_counted_and_the_rest_annotated(tmp_path, mesh):
    frames = synthetic_frames(4)
    good = write_recording(tmp_path / "good", Plan(frames, [1 + k / 10 for k in range(4)]))
    odd = write_recording(tmp_path / "odd", Plan(frames[:2], [9.0, 9.1], camera=Camera(ns="/other"),
                                                 extra_topics={"/camera/color/image_raw": "not an image"}))
    summary = annotate([good, odd], tmp_path / "o.mcap", settings(pipeline=mesh, image_topic="/camera/color/image_raw"),
                       show_progress=False)
    assert summary.stats.annotated == 4
    (why, n), = summary.stats.skipped.items()
    assert n == 2 and "std_msgs/msg/String, not an Image" in why


# ---------------------------------------------------------------------------- interrupted, and on Ray

def test_an_interrupted_job_keeps_its_finished_windows_and_ends_identical(tmp_path, mesh, monkeypatch):
    from hamer_ros.bag import job
    frames = synthetic_frames(30)
    rec = write_recording(tmp_path / "rec", Plan(frames, [1 + k / 10 for k in range(30)]))
    s = settings(pipeline=mesh, window_s=1.0, warmup_s=0.3)
    whole = annotate([rec], tmp_path / "whole.mcap", s, show_progress=False)
    out = tmp_path / "o.mcap"
    real_write, calls = job.Annotator._write, []

    def write_then_stop(self, *a, **kw):       # Ctrl-C in the middle of the second window
        calls.append(1)
        if len(calls) == 15:
            raise KeyboardInterrupt
        return real_write(self, *a, **kw)

    monkeypatch.setattr(job.Annotator, "_write", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        annotate([rec], out, s, show_progress=False)
    monkeypatch.setattr(job.Annotator, "_write", real_write)
    assert not out.exists()                                 # never a partial file under the name
    parts = out.with_name(out.name + ".parts")
    assert len(list(parts.glob("*.mcap"))) == 1 and not list(parts.glob("*.tmp"))
    # a killed run's leftovers: a window cut off mid-write, a part of other settings
    shutil.copy(next(parts.glob("*.mcap")), parts / "junk.mcap.tmp")
    other = annotate([rec], tmp_path / "other.mcap", settings(pipeline=mesh, window_s=1.0, warmup_s=0.3, batch=2),
                     show_progress=False)
    assert other.windows_reused == 0                        # batch is part of the settings
    again = annotate([rec], out, s, show_progress=False)
    assert again.windows_reused == 1 and again.stats.annotated == whole.stats.annotated == 30
    assert again.ran.annotated == 20 and "1 reused from an earlier run; this run: 20 frame(s)" in again.lines()[1]
    assert raw_messages(out) == raw_messages(tmp_path / "whole.mcap")
    assert not parts.exists()


def test_ray_workers_give_the_single_process_file(tmp_path, mesh):
    pytest.importorskip("ray", reason="Ray (extra `ray`) is not installed")
    frames = synthetic_frames(24)
    recs = [write_recording(tmp_path / f"rec{i}", Plan(frames[i::2], [1 + i * 0.05 + k / 5 for k in range(12)]))
            for i in range(2)]
    s = settings(pipeline=mesh, window_s=1.0, warmup_s=0.4, threads=1)   # the same CPU threads: the same sums
    single = annotate(recs, tmp_path / "single.mcap", s, show_progress=False)
    spread = annotate(recs, tmp_path / "ray.mcap", s, ray_address="local", workers=2, show_progress=False)
    assert spread.windows == single.windows == 6 and spread.stats.annotated == 24
    assert raw_messages(tmp_path / "ray.mcap") == raw_messages(tmp_path / "single.mcap")
    logs = [log for _, log, _ in raw_messages(tmp_path / "ray.mcap")]
    assert logs == sorted(logs)                              # the two recordings interleaved in time


# ---------------------------------------------------------------------------- the command

def test_the_command_writes_the_file_and_says_what_it_did(tmp_path, capsys, tiny_checkpoint):
    from hamer_ros.cli import main
    frames = synthetic_frames(5)
    rec = write_recording(tmp_path / "rec", Plan(frames, [1 + k / 10 for k in range(5)], broken={2}))
    rois = [f"{','.join(str(v) for v in r['box'])},{r['side']}" for r in ROIS]
    assert main(["bag", str(rec), "--out", str(tmp_path / "h.mcap"), "--device", "cpu", "--overlay", "--quiet",
                 "--checkpoint", str(tiny_checkpoint), "--roi", rois[0], "--roi", rois[1]]) == 0
    said = capsys.readouterr().out
    assert "annotated 4 of 5 frame(s) in 1 recording(s), 8 hand(s)" in said and "skipped 1: 1 × unusable image" in said
    out = read_out(tmp_path / "h.mcap")
    assert len(out["/hands/debug_image/compressed"]) == 4 and out["/hands/debug_image/compressed"][0][1].format.endswith("jpeg compressed bgr8")
    assert main(["bag", str(tmp_path / "missing"), "--out", str(tmp_path / "x.mcap")]) == 2
    assert "no such recording" in capsys.readouterr().err
    assert main(["bag", str(rec), "--out", str(tmp_path / "y.mcap"), "--image", "/nope", "--quiet"]) == 1
    assert "no topic /nope" in capsys.readouterr().err
    assert not (tmp_path / "y.mcap").exists()


def test_decode_reads_what_rosbags_wrote(tmp_path):
    frames = [np.full((8, 8, 3), 7, np.uint8)]
    rec = open_recording(write_recording(tmp_path / "r", Plan(frames, [2.5])))
    (m,) = [m for m in rec.messages(["/camera/color/image_raw"])]
    msg = decode(m)
    assert (msg.width, msg.height, msg.encoding, stamp(msg.header)) == (8, 8, "rgb8", 2_500_000_000)
    assert json.dumps(sorted(rec.topics)) == json.dumps(["/camera/color/camera_info", "/camera/color/image_raw"])
