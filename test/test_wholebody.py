"""Hands from whole-body keypoints (hamer_ros/perception/wholebody.py), on tiny ONNX models built
here with the real models' signatures (a YOLOX export with NMS in the graph: [1, 3, H, W] -> dets
[1, N, 5]; an RTMW export: [1, 3, h, w] -> simcc_x [1, 133, 2w], simcc_y [1, 133, 2h]) and known
outputs, so every box and side is exact; and, where HAMER_ROS_WHOLEBODY names the real models, the
recall on the example photos."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs onnx (extra [onnx])")
pytest.importorskip("onnxruntime", reason="needs onnxruntime (extra [onnx])")
from onnx import TensorProto, helper  # noqa: E402

from hamer_ros.perception.detect import make_detector  # noqa: E402
from hamer_ros.perception.wholebody import (LEFT_HAND, RIGHT_HAND, WholeBodyError, hands_from_keypoints,  # noqa: E402
                                            parse_models)

ANNOTATIONS = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "example_hands.json"


def _constant_model(path: Path, input_shape: list[int], outputs: dict[str, np.ndarray]) -> Path:
    """An ONNX model with the given input that returns fixed tensors (the input is read by a
    ReduceSum so that it is part of the graph, and multiplied by zero)."""
    nodes, outs, inits = [], [], []
    nodes.append(helper.make_node("ReduceSum", ["input"], ["s"], keepdims=0))
    nodes.append(helper.make_node("Mul", ["s", "zero"], ["z"]))
    inits.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
    for name, value in outputs.items():
        inits.append(helper.make_tensor(f"{name}_c", TensorProto.FLOAT, list(value.shape), value.ravel().tolist()))
        nodes.append(helper.make_node("Add", [f"{name}_c", "z"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


W_IN, H_IN = 48, 64          # the pose model's input (w, h); SimCC split ratio 2


def _simcc(points_in: dict[int, tuple[int, int]], score: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """simcc_x, simcc_y whose arg-max puts keypoint k at input pixel points_in[k] (others nowhere)."""
    x = np.zeros((1, 133, 2 * W_IN), np.float32)
    y = np.zeros((1, 133, 2 * H_IN), np.float32)
    for k, (u, v) in points_in.items():
        x[0, k, 2 * u] = score
        y[0, k, 2 * v] = score
    return x, y


def test_person_box_and_hand_keypoints_map_back_exactly(tmp_path):
    # The person detector sees a 200x100 frame letterboxed into 64x64 top-left: ratio 0.32.
    # It reports one person at (16, 8)-(48, 24) on its canvas = (50, 25)-(150, 75) in the frame.
    person = _constant_model(tmp_path / "person.onnx", [1, 3, 64, 64],
                             {"dets": np.array([[[16, 8, 48, 24, 0.9], [0, 0, 1, 1, 0.2]]], np.float32),
                              "labels": np.zeros((1, 2), np.float32)})
    # The person box 100x50, padded 1.25 -> 125x62.5, widened to the input's 48:64 -> 125 x 166.67;
    # its centre (100, 50) maps to input (24, 32), 1 input px = 125/48 frame px.
    right = {k: (24 + (k - 112) % 5, 32 + (k - 112) // 5) for k in range(112, 133)}      # a 5-wide grid of points
    left = {k: (10, 10) for k in range(91, 94)}                                           # only 3 valid: no hand
    simcc_x, simcc_y = _simcc({**right, **left})
    pose = _constant_model(tmp_path / "pose.onnx", [1, 3, H_IN, W_IN], {"simcc_x": simcc_x, "simcc_y": simcc_y})
    det = make_detector("wholebody", person_model=person, pose_model=pose, max_hands=4)
    (hand,) = det(np.zeros((100, 200, 3), np.uint8))
    scale = 125 / 48
    x1, y1 = 100 + (24 - 24) * scale, 50 + (32 - 32) * scale
    x2, y2 = 100 + (28 - 24) * scale, 50 + (36 - 32) * scale
    np.testing.assert_allclose(hand.box, [x1, y1, x2, y2], atol=1e-4)
    assert hand.is_right and hand.score == pytest.approx(0.9) and hand.keypoints is None


def test_hands_from_keypoints_follow_the_demos_rule():
    kp = np.zeros((133, 2))
    sc = np.zeros(133)
    kp[LEFT_HAND] = np.stack([np.arange(21), np.arange(21) * 2], -1) + [100, 200]
    sc[LEFT_HAND] = 0.8
    sc[LEFT_HAND.start + 5] = 0.1                  # one low keypoint is left out of the box
    kp[LEFT_HAND.start + 5] = [0, 0]
    sc[RIGHT_HAND][:4] = 0.0
    sc[RIGHT_HAND.start:RIGHT_HAND.start + 4] = 0.9   # exactly 4 valid: "more than 3"
    kp[RIGHT_HAND.start:RIGHT_HAND.start + 4] = [[10, 10], [20, 12], [15, 30], [12, 5]]
    left, right = hands_from_keypoints(kp, sc)
    assert not left.is_right and right.is_right
    np.testing.assert_array_equal(left.box, [100, 200, 120, 240])
    np.testing.assert_array_equal(right.box, [10, 5, 20, 30])
    sc[RIGHT_HAND.start] = 0.0                         # 3 valid: no right hand
    assert [d.is_right for d in hands_from_keypoints(kp, sc)] == [False]


def test_bad_models_and_settings_are_named(tmp_path):
    with pytest.raises(WholeBodyError, match="not found"):
        make_detector("wholebody", person_model=tmp_path / "none.onnx", pose_model=tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(WholeBodyError, match="cannot be loaded"):
        make_detector("wholebody", person_model=tmp_path / "junk.onnx", pose_model=tmp_path / "junk.onnx")
    raw = _constant_model(tmp_path / "raw.onnx", [1, 3, 64, 64], {"out": np.zeros((1, 10, 85), np.float32)})
    pose = _constant_model(tmp_path / "pose.onnx", [1, 3, H_IN, W_IN],
                           dict(zip(("simcc_x", "simcc_y"), _simcc({}))))
    with pytest.raises(WholeBodyError, match=r"expected output \[1, N, 5\]"):
        make_detector("wholebody", person_model=raw, pose_model=pose)(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="PERSON_DETECTOR.onnx,WHOLEBODY_POSE.onnx"):
        parse_models("only_one.onnx")
    from hamer_ros.settings import PARAMETER_SPECS, dependent_parameter_problem
    values = {p.name: p.default for p in PARAMETER_SPECS.values()} | {"detector": "wholebody"}
    assert "needs wholebody_models" in dependent_parameter_problem(values, set(), starting=True)


def test_real_models_find_the_example_hands(examples):
    """Enabled by HAMER_ROS_WHOLEBODY='PERSON.onnx,POSE.onnx' (the issue's target: 9 of 10)."""
    text = os.environ.get("HAMER_ROS_WHOLEBODY", "")
    if not text:
        pytest.skip("set HAMER_ROS_WHOLEBODY='PERSON_DETECTOR.onnx,WHOLEBODY_POSE.onnx' to run on the real models")
    import cv2
    from scipy.optimize import linear_sum_assignment

    from hamer_ros.perception.track import iou_matrix
    person, pose = parse_models(text)
    det = make_detector("wholebody", person_model=person, pose_model=pose, max_hands=10)
    found = false = 0
    for name, photo in json.loads(ANNOTATIONS.read_text())["images"].items():
        image = np.ascontiguousarray(cv2.imread(str(examples / name))[:, :, ::-1])
        dets = det(image)
        truth = np.array([h["box"] for h in photo["hands"]], float)
        ok = 0
        if dets:
            iou = iou_matrix(np.stack([d.box for d in dets]), truth)
            r, c = linear_sum_assignment(-iou)
            ok = int((iou[r, c] >= 0.3).sum())
        found, false = found + ok, false + len(dets) - ok
    assert found >= 9 and false <= 1, (found, false)
