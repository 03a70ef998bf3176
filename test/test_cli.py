import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from hamer_ros import cli
from hamer_ros.cli import main

ROI = "50,50,150,180,left"


def obj_counts(path):
    lines = path.read_text().splitlines()
    return sum(l.startswith("v ") for l in lines), sum(l.startswith("f ") for l in lines)


def results(out):
    return [json.loads(line) for line in (out / "hands.jsonl").read_text().splitlines()]


def run(argv, capsys):
    """(exit status, stderr lines) of `hamer-ros ARGV`, run in this process: an exception that
    escaped main() would fail the test instead."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:   # argparse's own exit (usage errors, --help)
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip() and "frame/s]" not in line]   # not tqdm


def write_images(folder, n, size=(240, 320)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((*size, 3), 60 + 40 * i, np.uint8))
    return folder


def test_infer_real_image_with_tiny_model(tmp_path, tiny_checkpoint, mano_path, examples):
    out = tmp_path / "out"
    rc = main(["infer", str(examples / "test1.jpg"), "--out", str(out), "--checkpoint", str(tiny_checkpoint),
               "--mano", str(mano_path), "--intrinsics", "700,700,424,282", "--device", "cpu"])
    assert rc == 0
    overlay = cv2.imread(str(out / "test1_overlay.png"))
    original = cv2.imread(str(examples / "test1.jpg"))
    assert overlay.shape == original.shape
    changed = np.abs(overlay.astype(int) - original).max(-1) > 30
    assert changed.sum() > 2000     # meshes and skeletons were drawn, not just boxes
    objs = sorted(out.glob("test1_*.obj"))
    assert len(objs) >= 2
    for obj in objs:
        assert obj_counts(obj) == (778, 1538)
    (rec,) = results(out)
    assert rec["K"][0][0] == 700 and len(rec["hands"]) == len(objs)
    hand = rec["hands"][0]
    assert hand["side"] == "right" and len(hand["joints_m"]) == 21 and hand["mesh_obj"].endswith(".obj")
    assert len(hand["mano"]["hand_pose"]) == 15 and all(j[2] > 0 for j in hand["joints_m"])


def test_roi_boxes_without_a_checkpoint_give_joints(tmp_path, examples):
    """--roi without --checkpoint: the landmark model finds the hand in each box (joints only),
    with the side the box was given."""
    out = tmp_path / "out"
    rc = main(["infer", str(examples / "test1.jpg"), "--out", str(out), "--roi", "257,156,381,342,right",
               "--roi", "408,286,502,428,right", "--intrinsics", "700,700,424,282", "--device", "cpu"])
    assert rc == 0
    (rec,) = results(out)
    assert [h["side"] for h in rec["hands"]] == ["right", "right"]
    assert all(len(h["joints_m"]) == 21 and all(j[2] > 0 for j in h["joints_m"]) for h in rec["hands"])


def test_videos_and_folder_share_one_model_and_pipeline(tmp_path, tiny_checkpoint, monkeypatch):
    """Two videos and a folder: the checkpoint is loaded once and one pipeline serves them all,
    with tracking (fresh ids) per video and none between independent images."""
    from hamer_ros.model import HaMeR
    from hamer_ros.perception import pipeline

    calls = {"load": 0, "pipeline": 0}
    load, init = HaMeR.from_checkpoint.__func__, pipeline.HandPipeline.__init__

    def counted_load(cls, *a, **k):
        calls["load"] += 1
        return load(cls, *a, **k)

    def counted_init(self, *a, **k):
        calls["pipeline"] += 1
        init(self, *a, **k)

    monkeypatch.setattr(HaMeR, "from_checkpoint", classmethod(counted_load))
    monkeypatch.setattr(pipeline.HandPipeline, "__init__", counted_init)
    videos = []
    for name in ("clip", "other"):
        videos.append(tmp_path / f"{name}.avi")
        writer = cv2.VideoWriter(str(videos[-1]), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
        for i in range(3):
            writer.write(np.full((240, 320, 3), 40 * i + 50, np.uint8))
        writer.release()
    folder = write_images(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    # no --mano: MANO from the checkpoint's own copy
    assert main(["infer", str(videos[0]), str(folder), str(videos[1]), "--out", str(out),
                 "--checkpoint", str(tiny_checkpoint), "--roi", ROI, "--device", "cpu"]) == 0
    assert calls == {"load": 1, "pipeline": 1}
    frames = results(out)
    assert [(f["source"].rsplit("/", 1)[-1], f["frame"]) for f in frames] == [
        ("f0.png", 0), ("f1.png", 0), ("clip.avi", 0), ("clip.avi", 1), ("clip.avi", 2),
        ("other.avi", 0), ("other.avi", 1), ("other.avi", 2)]
    assert all(f["hands"][0]["side"] == "left" for f in frames)
    assert [f["hands"][0]["track_id"] for f in frames[:2]] == [-1, -1]       # images: no tracking
    assert frames[2]["hands"][0]["track_id"] == frames[4]["hands"][0]["track_id"] >= 0
    assert frames[5]["hands"][0]["track_id"] == frames[7]["hands"][0]["track_id"] >= 0
    assert frames[0]["K"][0][2] == pytest.approx(160.0)   # no --intrinsics: centred field-of-view guess
    # video frames carry their time (10 fps), images none; every hand its local joints and held flag
    assert [f["time_s"] for f in frames[:5]] == [None, None, 0.0, pytest.approx(0.1), pytest.approx(0.2)]
    hand = frames[3]["hands"][0]
    assert hand["held"] is False and np.allclose(hand["joints_local_m"][0], 0.0)
    assert obj_counts(out / "clip_000000_0_left.obj") == (778, 1538)
    assert (out / "other_000002_overlay.png").is_file()


def test_video_hands_are_filtered_on_the_frame_times(tmp_path, tiny_checkpoint):
    """The same noisy still scene as a video: smoothed by default, raw with --no-filter."""
    rng = np.random.default_rng(0)
    video = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    base = rng.integers(60, 200, (240, 320, 3)).astype(np.float64)
    for _ in range(20):
        writer.write(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    writer.release()
    spread = {}
    for name, extra in (("on", []), ("off", ["--no-filter"])):
        out = tmp_path / name
        assert main(["infer", str(video), "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--roi", ROI,
                     "--device", "cpu", *extra]) == 0
        wrists = np.array([f["hands"][0]["wrist_position_m"] for f in results(out)][5:])
        spread[name] = np.linalg.norm(wrists - wrists.mean(0), axis=1).mean()
    assert spread["on"] < spread["off"] / 2, spread


def test_a_broken_file_is_skipped_and_every_other_result_kept(tmp_path, tiny_checkpoint, capsys):
    folder = write_images(tmp_path / "imgs", 3)
    (folder / "f1.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (folder / "notes.txt").write_text("ignored: not an image")
    out = tmp_path / "out"
    code, err = run(["infer", folder, "--out", out, "--checkpoint", tiny_checkpoint, "--roi", ROI,
                     "--device", "cpu", "--intrinsics", "300,300,160,120"], capsys)
    assert code == 1
    assert [f["source"] for f in results(out)] == [str(folder / "f0.png"), str(folder / "f2.png")]
    assert (out / "f0_overlay.png").is_file() and (out / "f2_0_left.obj").is_file()
    assert err == [f"skipped {folder / 'f1.png'}: cannot read it as an image (corrupt, or not really a .png file)",
                   f"2 frame(s), 2 hand(s) → {out / 'hands.jsonl'}; 1 input(s) failed and were skipped (see above)"]


def test_a_frame_that_fails_is_reported_and_an_interrupt_keeps_finished_frames(tmp_path, tiny_checkpoint,
                                                                               capsys, monkeypatch):
    from hamer_ros.perception import overlay

    draw = overlay.draw_hands
    seen = []

    def flaky(image, hands, K, *a, **k):   # the second frame fails deep inside, the fourth is Ctrl-C
        seen.append(1)
        if len(seen) == 2:
            raise cv2.error("OpenCV(4.10) resize.cpp:4152: error: (-215:Assertion failed) !ssize.empty()")
        if len(seen) == 4:
            raise KeyboardInterrupt
        return draw(image, hands, K, *a, **k)

    monkeypatch.setattr(overlay, "draw_hands", flaky)
    folder = write_images(tmp_path / "imgs", 5)
    out = tmp_path / "out"
    code, err = run(["infer", folder, "--out", out, "--checkpoint", tiny_checkpoint, "--roi", ROI,
                     "--device", "cpu", "--hfov", "70"], capsys)
    assert code == 130
    assert [f["source"] for f in results(out)] == [str(folder / "f0.png"), str(folder / "f2.png")]
    assert any(line.startswith(f"skipped {folder / 'f1.png'} (frame 0): error: ") and "Assertion failed" in line
               for line in err)
    assert err[-1] == "hamer-ros infer: interrupted (finished frames are kept)"


def _matrix_cases(tmp_path, tiny_checkpoint, mano_path):
    img = write_images(tmp_path / "in", 1) / "f0.png"
    out = tmp_path / "out"
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    truncated = tmp_path / "trunc" / "checkpoints" / "hamer.ckpt"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:3000])
    (tmp_path / "trunc" / "model_config.yaml").write_text(
        (tiny_checkpoint.parent.parent / "model_config.yaml").read_text())
    bad_mano = tmp_path / "mano" / "MANO_RIGHT.pkl"
    bad_mano.parent.mkdir()
    bad_mano.write_bytes(mano_path.read_bytes()[:4000])
    empty = tmp_path / "empty"
    empty.mkdir()
    no_cuda = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    base = [img, "--out", out]
    ckpt = ["--checkpoint", tiny_checkpoint, "--roi", ROI, "--device", "cpu"]
    return [
        # (arguments, exit status, text the one error line must hold)
        (base + ["--intrinsics", "abc"], 2, "expected four numbers fx,fy,cx,cy"),
        (base + ["--intrinsics", "1,2,3"], 2, "expected four numbers fx,fy,cx,cy"),
        (base + ["--intrinsics", "0,0,0,0"], 2, "focal lengths fx, fy must be positive"),
        (base + ["--intrinsics", "nan,600,320,240"], 2, "must be finite numbers"),
        (base + ["--hfov", "200"], 2, "expected degrees between 0 and 180"),
        (base + ["--device", no_cuda], 2, "CUDA is not available" if no_cuda == "cuda" else "CUDA device(s)"),
        (base + ["--device", "gpu0"], 2, "unknown device 'gpu0'"),
        ([img, "--out", a_file], 2, "is a file; give a folder"),
        ([tmp_path / "missing.jpg", "--out", out], 2, "no such file or folder"),
        ([a_file, "--out", out], 2, "is not an image"),
        ([empty, "--out", out], 2, "no images or videos in"),
        (base + ["--max-hands", "0"], 2, "expected a whole number from 1 to 10"),
        (base + ["--roi", "1,2,3,up"], 2, "expected x1,y1,x2,y2,left|right"),
        (base + ["--wholebody", "a.onnx"], 2, "PERSON_DETECTOR.onnx,WHOLEBODY_POSE.onnx"),
        (base + ["--wholebody", "a.onnx,b.onnx"], 2, "a.onnx not found"),
        (base + ["--mano", mano_path], 2, "--mano needs --checkpoint"),
        (base + ["--checkpoint", tmp_path / "nowhere.ckpt"], 2, "not found. Get the HaMeR weights"),
        (base + ["--checkpoint", tmp_path], 2, "is a folder, not the checkpoint file"),
        (base + ["--checkpoint", tiny_checkpoint, "--mano", tmp_path / "no_mano"], 2, "MANO model not found"),
        (base + ckpt[:2] + ["--checkpoint", truncated] + ckpt[2:], 1, "truncated or corrupt"),
        (base + ["--checkpoint", img, "--roi", ROI], 1, "is not a readable PyTorch checkpoint"),
        (base + ckpt + ["--mano", bad_mano], 1, "corrupt or truncated"),
    ]


def test_error_matrix_one_line_and_exit_status(tmp_path, tiny_checkpoint, mano_path, capsys):
    for argv, status, text in _matrix_cases(tmp_path, tiny_checkpoint, mano_path):
        code, err = run(["infer", *argv], capsys)
        assert (code, len(err)) == (status, 1), (argv, err)
        assert err[0].startswith("hamer-ros infer: error: ") and text in err[0], (argv, err)
        assert not list((tmp_path / "out").glob("*.png")), argv   # refused before any frame ran


def test_error_in_a_real_process_is_one_line_without_traceback(tmp_path, tiny_checkpoint):
    bad = tmp_path / "c" / "checkpoints" / "hamer.ckpt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint")
    img = write_images(tmp_path / "in", 1) / "f0.png"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.run([sys.executable, "-m", "hamer_ros.cli", "infer", str(img), "--out", str(tmp_path / "o"),
                        "--checkpoint", str(bad), "--roi", ROI, "--device", "cpu", "--hfov", "60"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith(f"hamer-ros infer: error: cannot use the HaMeR weights: {bad} is not a readable")
    assert not (tmp_path / "o" / "hands.jsonl").exists() or not (tmp_path / "o" / "hands.jsonl").read_text()


def test_help_says_what_each_option_does_its_default_and_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["infer", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "examples:" in text and "exit status:" in text and "hands.jsonl" in text
    for default in ("(default: auto)", "(default: 60.0)", "(default: 4)", "(default: fp32)", "(default: eager)",
                    "(default: 2.0)"):
        assert default in text
    infer = cli.build_parser()._subparsers._group_actions[0].choices["infer"]
    for action in infer._actions:
        if action.dest != "help":   # every option: what it does, with an example or its choices
            assert "e.g." in action.help or action.choices, action.dest


def test_the_code_that_runs_is_this_tree(tmp_path):
    """After `source scripts/env.sh`, `hamer-ros` and the node import hamer_ros from colcon's
    install space: built with --symlink-install, its files are this tree's, so edits need no
    rebuild. Run from elsewhere, so the current folder cannot shadow the installed copy."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import hamer_ros, hamer_ros.cli, hamer_ros.perception.pipeline as p; from pathlib import Path; "
            "print(hamer_ros.cli.__file__); print(Path(p.__file__).resolve())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert Path(out[0]).resolve() == root / "hamer_ros" / "cli.py", out[0]
    assert Path(out[1]) == root / "hamer_ros" / "perception" / "pipeline.py"


def test_missing_hand_models_say_how_to_restore_them(tmp_path, monkeypatch, capsys):
    from hamer_ros.perception.hand_models import runtime
    monkeypatch.setattr(runtime, "MODEL_DIR", tmp_path / "nowhere")     # the .npz files gone
    img = write_images(tmp_path / "in", 1) / "f0.png"
    code, err = run(["infer", img, "--out", tmp_path / "out"], capsys)
    assert code == 1 and len(err) == 1
    assert err[0].startswith("hamer-ros infer: error: hand model ") and "not found" in err[0]
    assert "git checkout -- hamer_ros/perception/hand_models/" in err[0] and "--checkpoint with --roi" in err[0]


def test_depth_pairs_anchor_hands_and_mismatches_are_reported(tmp_path, tiny_checkpoint, capsys):
    """x.png + x_depth.png (16-bit mm): the hand is moved to the measured distance and says so;
    a missing or wrong-size depth image fails its frame with one line; depth images in the
    folder are not inputs themselves."""
    folder = write_images(tmp_path / "rgbd", 3)
    size = (240, 320)
    cv2.imwrite(str(folder / "f0_depth.png"), np.full(size, 700, np.uint16))            # a wall at 0.7 m
    cv2.imwrite(str(folder / "f1_depth.png"), np.full((120, 160), 700, np.uint16))      # not aligned
    common = ["--checkpoint", tiny_checkpoint, "--roi", ROI, "--device", "cpu", "--intrinsics", "300,300,160,120"]
    out = tmp_path / "out"
    code, err = run(["infer", folder, "--out", out, "--depth", *common], capsys)
    assert code == 1
    (rec,) = results(out)
    assert rec["source"] == str(folder / "f0.png") and rec["depth"] == str(folder / "f0_depth.png")
    (hand,) = rec["hands"]
    assert hand["placement"] == "rgbd" and 0 <= hand["depth_residual_m"] < 0.03 and hand["scale"] != 1.0
    z = np.array([list(map(float, l.split()[1:])) for l in (out / hand["mesh_obj"]).read_text().splitlines()
                  if l.startswith("v ")])[:, 2]
    assert abs(np.median(z) - 0.7) < 0.03 and z.min() < 0.7 < z.max()   # the hand sits on the wall
    assert err[0] == (f"skipped {folder / 'f1_depth.png'}: depth is 160x120 but its colour image 320x240; "
                      "use depth aligned to the colour camera")
    assert err[1].startswith(f"skipped {folder / 'f2_depth.png'}: no such file")
    # without --depth the same image is placed from RGB alone, elsewhere
    code, _ = run(["infer", folder / "f0.png", "--out", tmp_path / "rgb", *common], capsys)
    (plain,) = results(tmp_path / "rgb")[0]["hands"]
    assert code == 0 and plain["placement"] == "rgb" and plain["depth_residual_m"] is None and plain["scale"] == 1.0
    # the same rays, the distance scaled by the hand's scale
    np.testing.assert_allclose(np.asarray(hand["wrist_position_m"]), hand["scale"] * np.asarray(plain["wrist_position_m"]),
                               atol=2e-6)
    assert abs(plain["wrist_position_m"][2] - hand["wrist_position_m"][2]) > 0.05


def test_depth_refuses_videos_up_front(tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    code, err = run(["infer", video, "--out", tmp_path / "out", "--depth"], capsys)
    assert code == 2 and len(err) == 1 and "--depth pairs images only" in err[0]
