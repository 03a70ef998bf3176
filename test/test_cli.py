import json

import cv2
import numpy as np
import pytest

from hamer_ros.cli import main


def obj_counts(path):
    lines = path.read_text().splitlines()
    return sum(l.startswith("v ") for l in lines), sum(l.startswith("f ") for l in lines)


def test_infer_real_image_with_tiny_model(tmp_path, tiny_checkpoint, mano_path, examples):
    pytest.importorskip("mediapipe", reason="MediaPipe not installed: pip install 'hamer_ros[mediapipe]'")
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
    data = json.loads((out / "hands.json").read_text())
    (rec,) = data["frames"]
    assert rec["K"][0][0] == 700 and len(rec["hands"]) == len(objs)
    hand = rec["hands"][0]
    assert hand["side"] == "right" and len(hand["joints_m"]) == 21 and hand["mesh_obj"].endswith(".obj")
    assert len(hand["mano"]["hand_pose"]) == 15 and all(j[2] > 0 for j in hand["joints_m"])


def test_infer_video_and_folder_with_fixed_rois(tmp_path, tiny_checkpoint, mano_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(3):
        writer.write(np.full((240, 320, 3), 40 * i + 50, np.uint8))
    writer.release()
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((240, 320, 3), 100, np.uint8))
    out = tmp_path / "out"
    main(["infer", str(video), str(folder), "--out", str(out), "--checkpoint", str(tiny_checkpoint),
          "--mano", str(mano_path), "--roi", "50,50,150,180,left", "--device", "cpu"])
    frames = json.loads((out / "hands.json").read_text())["frames"]
    assert len(frames) == 5 and sorted(p.name for p in out.glob("*_overlay.png"))[:3] == [
        "clip_000000_overlay.png", "clip_000001_overlay.png", "clip_000002_overlay.png"]
    assert all(f["hands"][0]["side"] == "left" for f in frames)
    # no --intrinsics: the field-of-view guess gives a centred principal point
    assert frames[0]["K"][0][2] == pytest.approx(160.0)
    assert obj_counts(out / "clip_000000_0_left.obj") == (778, 1538)


def test_bad_roi_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit):
        main(["infer", str(tmp_path), "--out", str(tmp_path / "o"), "--roi", "1,2,3,up"])
