"""hand_mesh_node's parameters: the declared table, config/hands.yaml, launch/hands.launch.py (read
statically: `launch` is not on PyPI; it was run for real under launch 3.4.3 / launch_ros 0.26.6
built from source, see the README), rviz/hands.rviz, and the node's handling of invalid
values, at start-up and at run time (an in-process node; one subprocess for a fatal start)."""
from __future__ import annotations

import ast
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "hands.launch.py"
CONFIG = ROOT / "config" / "hands.yaml"
RVIZ = ROOT / "rviz" / "hands.rviz"

try:
    import rclpy
    from rclpy.parameter import Parameter

    from hamer_ros.ros.node import HandMeshNode, StartupError
    from hamer_ros.settings import PARAMETERS, VIZ_PARAMETERS
except ImportError as exc:  # a ROS-free checkout: only the core's tests apply
    pytest.skip(f"ROS 2 not importable ({exc}); run `bash scripts/build_ros.sh && source scripts/env.sh` first",
                allow_module_level=True)

DECLARED = {p.name: p for p in PARAMETERS}
VIZ_DECLARED = {p.name: p for p in VIZ_PARAMETERS}
# What each node declares, by the name it is known under in config/hands.yaml and the README.
TABLES = {"hand_mesh_node": DECLARED, "hand_viz_node": VIZ_DECLARED}
ROIS = "[{box: [30, 50, 130, 170], side: left}, {box: [180, 50, 280, 170], side: right}]"


# ------------------------------------------------------------------------------------------------
# the table, the YAML, the launch file, the RViz config

def test_parameter_table():
    assert len(DECLARED) == len(PARAMETERS) and len(VIZ_DECLARED) == len(VIZ_PARAMETERS), "duplicate names"
    assert {"image_is_rectified", "pair_window", "debug_image_scale", "debug_image_jpeg_quality"} == set(VIZ_DECLARED)
    required = {"checkpoint", "mano", "device", "precision", "detector", "rois", "max_hands", "min_score",
                "rescale", "refine_translation", "fit_rotation", "tracking", "side_switch_frames", "filter",
                "filter_min_cutoff", "filter_beta", "filter_d_cutoff", "hold_time", "qos_reliability",
                "camera_info_any_frame",
                "camera_info_sync", "camera_info_timeout", "tf_prefix", "publish_tf", "publish_joint_frames",
                "publish_vertices", "diagnostics_period"}
    assert required <= DECLARED.keys()
    for name in ("checkpoint", "mano", "device", "precision", "detector"):
        assert DECLARED[name].read_only, name
    for name in ("min_score", "max_hands", "tf_prefix", "filter", "filter_beta", "hold_time", "refine_translation",
                 "publish_tf", "publish_joint_frames", "publish_vertices"):
        assert not DECLARED[name].read_only, name
    for p in PARAMETERS + VIZ_PARAMETERS:
        assert p.description and p.validate(p.default) is None, p.name
        if isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
            assert p.range is not None, f"{p.name}: numeric parameters get a range"


def test_yaml_sets_every_declared_parameter_to_its_default():
    """Each node's section sets exactly its declared parameters, each to its default; the one both
    declare (image_is_rectified) alike. No `/**` section: rcl would let it override values given
    with -p (by the launch arguments), since the node's own section wins over `/**` in either."""
    doc = yaml.safe_load(CONFIG.read_text())
    assert set(doc) == {"/**/hand_mesh_node", "/**/hand_viz_node"}
    sections = {name: doc[f"/**/{name}"]["ros__parameters"] for name in TABLES}
    for node_name, declared in TABLES.items():
        params = sections[node_name]
        assert set(params) == set(declared), (node_name, set(params) ^ set(declared))
        for name, value in params.items():
            default = declared[name].default
            assert type(value) is type(default) and value == default, (node_name, name, value, default)
    shared = set(DECLARED) & set(VIZ_DECLARED)
    assert shared == {"image_is_rectified"} and all(DECLARED[n] == VIZ_DECLARED[n] for n in shared)


def test_readme_parameter_tables_are_the_tables():
    """The README's Parameters section has one table per node, listing every parameter it declares
    once, with its type, range, default and read-only mark as the table has them."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Parameters"):readme.index("### Topics")]
    kinds = {bool: "bool", int: "int", float: "double", str: "string"}
    for node_name, declared in TABLES.items():
        part = section[section.index(f"#### {node_name}"):]
        part = part[:part.find("\n####", 1)] if "\n####" in part[1:] else part
        rows = {}
        for line in part.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 4 and cells[0].startswith("`") and cells[0].endswith("`"):
                assert cells[0][1:-1] not in rows, f"{node_name}: {cells[0]} listed twice"
                rows[cells[0][1:-1]] = cells
        assert set(rows) == set(declared), (node_name, set(rows) ^ set(declared))
        for name, (_, kind, default, description, *_) in rows.items():
            spec = declared[name]
            expected_kind = kinds[type(spec.default)]
            if spec.range is not None:
                lo, hi = (f"{x:g}" for x in spec.range)
                expected_kind += f" [{lo}, {hi}]"
            assert kind == expected_kind, (name, kind, expected_kind)
            if isinstance(spec.default, bool):
                expected = "true" if spec.default else "false"
            elif isinstance(spec.default, str):
                expected = (f"`{spec.default}`" if spec.default and not spec.default.startswith("[")
                            else f'`"{spec.default}"`')
            else:
                expected = str(spec.default)
            assert default == expected, (name, default, expected)
            assert description.startswith("*read-only*") == spec.read_only, (name, description[:40])


def _launch_tree() -> ast.Module:
    source = LAUNCH.read_text()
    compile(source, str(LAUNCH), "exec")
    return ast.parse(source)


def _call_name(node: ast.Call) -> str:
    return node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")


def test_launch_file_sets_only_declared_parameters():
    from hamer_ros.ros.launch_args import NAMES, node_settings
    assert {"image_topic", "camera_info_topic", "depth_topic", "namespace", "params_file", "checkpoint", "mano",
            "device", "rviz", "autostart", "visualize"} == set(NAMES)
    every = node_settings({"checkpoint": "c.ckpt", "mano": "m.pkl", "device": "cpu", "autostart": "true",
                           "depth_topic": "/depth"}, "/p.yaml")
    assert every.overrides and every.overrides.keys() <= DECLARED.keys(), \
        f"the launch arguments set undeclared parameters: {every.overrides.keys() - DECLARED.keys()}"
    # the launch file declares the table's arguments and reads no other
    tree = _launch_tree()
    configurations = {c.args[0].value for c in ast.walk(tree)
                      if isinstance(c, ast.Call) and _call_name(c) == "LaunchConfiguration" and c.args
                      and isinstance(c.args[0], ast.Constant)}
    assert configurations <= set(NAMES), f"undeclared launch arguments: {configurations - set(NAMES)}"

    source = LAUNCH.read_text()
    for needle in ('"hand_mesh_node"', '"hand_viz_node"', '"hands.yaml"', '"hands.rviz"', "LAUNCH_ARGUMENTS", "node_settings(",
                   'get_package_share_directory("hamer_ros")', '"fastdds_large_images.xml"'):
        assert needle in source, needle
    # the environment the node reads to name launch arguments in its hints
    from hamer_ros.ros.dds_profile import PROFILE_ENV, PROFILE_FILE
    from hamer_ros.ros.hints import STARTED_BY_ENV
    constants = {t.id: ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and t.id in ("STARTED_BY_ENV", "PROFILE_ENV")}
    assert constants == {"STARTED_BY_ENV": STARTED_BY_ENV, "PROFILE_ENV": PROFILE_ENV}
    assert (ROOT / "config" / PROFILE_FILE).is_file()


def test_launch_looks_up_rviz_before_starting_anything():
    """A missing rviz2 must never leave a started node behind: the lookup happens in the function
    that builds the actions, before any of them exists, and failing it only drops RViz."""
    setup = next(f for f in ast.walk(_launch_tree()) if isinstance(f, ast.FunctionDef) and f.name == "_launch_setup")
    calls = [c for c in ast.walk(setup) if isinstance(c, ast.Call)]
    lookup = next(c for c in calls if _call_name(c) == "get_package_prefix" and c.args[0].value == "rviz2")
    nodes = [c for c in calls if _call_name(c) == "Node"]
    assert nodes and all(lookup.lineno < n.lineno for n in nodes)
    handler = next(h for h in ast.walk(setup) if isinstance(h, ast.ExceptHandler))
    assert getattr(handler.type, "id", "") == "PackageNotFoundError"
    assert any(isinstance(c, ast.Call) and _call_name(c) == "LogInfo" for c in ast.walk(handler)), "RViz's absence is logged"
    assert not any(isinstance(c, ast.Raise) for c in ast.walk(handler))


def test_rviz_config():
    cfg = yaml.safe_load(RVIZ.read_text())
    manager = cfg["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_color_optical_frame"
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == "hands/debug_image"
    # the node publishes it best effort: a reliable display would never match
    assert displays["rviz_default_plugins/Image"]["Topic"]["Reliability Policy"] == "Best Effort"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "hands/markers"
    assert "rviz_default_plugins/TF" in displays
    for d in manager["Displays"]:
        assert d["Enabled"] is True and d["Name"]
    assert manager["Views"]["Current"]["Class"] == "rviz_default_plugins/Orbit"


# ------------------------------------------------------------------------------------------------
# the node in-process: declared parameters, descriptors, run-time validation

@pytest.fixture(scope="module")
def context():
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def _make(context, **params) -> HandMeshNode:
    """An in-process node taken to active, as autostart does (StartupError when it cannot)."""
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    node = HandMeshNode(context=context, parameter_overrides=overrides, namespace=f"/t{os.getpid()}/inproc")
    try:
        node.start()
    except BaseException:
        node.close()
        node.destroy_node()
        raise
    return node


@pytest.fixture(scope="module")
def node(context):
    n = _make(context, detector="fixed", rois=ROIS, device="cpu")
    yield n
    n.close()
    n.destroy_node()


def test_node_declares_the_table(node):
    names = set(node.list_parameters([], 0).names)
    assert set(DECLARED) <= names
    by_name = dict(zip(DECLARED, node.describe_parameters(list(DECLARED))))
    assert by_name["checkpoint"].read_only and not by_name["min_score"].read_only
    assert by_name["min_score"].floating_point_range[0].to_value == 1.0
    assert by_name["max_hands"].integer_range[0].from_value == 1
    assert "one of: best_effort, reliable" in by_name["qos_reliability"].additional_constraints
    assert all(d.description for d in by_name.values())


@pytest.mark.parametrize("name,value,reason", [
    ("min_score", 1.5, "out of range"),
    ("min_score", "high", "type"),
    ("max_hands", 0, "out of range"),
    ("side_switch_frames", 0, "out of range"),
    ("camera_info_sync", "approximate", "must be one of latest, exact"),
    ("tf_prefix", "/robot", "must not start with '/'"),
    ("tf_prefix", "a b", "only letters"),
    ("rois", "[{box: [1, 2, 3, 4]}]", "missing 'side'"),
    ("rois", "[{box: [1, 2, 3], side: left}]", "4 finite numbers"),
    ("rois", "{not: a list}", "must be a list"),
    ("rois", "[{box: [10, 10, 5, 50], side: left}]", "non-positive width"),
    ("checkpoint", "/other.ckpt", "read-only"),
    ("detector", "mediapipe", "read-only"),
    ("qos_reliability", "reliable", "read-only"),
])
def test_invalid_runtime_values_are_rejected_with_a_reason(node, name, value, reason):
    before = node.get_parameter(name).value
    (result,) = node.set_parameters([Parameter(name, value=value)])
    assert not result.successful
    assert reason.lower() in result.reason.lower(), result.reason
    assert node.get_parameter(name).value == before


def test_runtime_values_take_effect(node):
    changes = dict(min_score=0.3, max_hands=1, tf_prefix="robot1/", filter_beta=5.0, refine_translation=False,
                   publish_joint_frames=True, publish_vertices=False, rescale=2.5,
                   rois="[{box: [0, 0, 50, 60], side: right}]", camera_info_sync="exact", tracking=False)
    results = node.set_parameters([Parameter(k, value=v) for k, v in changes.items()])
    assert all(r.successful for r in results), [r.reason for r in results]
    assert node._opts.tf_prefix == "robot1/" and node._opts.publish_joint_frames and not node._opts.publish_vertices
    assert node._ctx.sync.policy == "exact"
    node._worker._apply_pending()          # what the worker does before the next frame
    cfg = node.pipeline.config
    assert (cfg.min_score, cfg.max_hands, cfg.filter_beta, cfg.refine, cfg.rescale) == (0.3, 1, 5.0, False, 2.5)
    assert node.pipeline.tracker is None
    dets = node.pipeline.detector(None)
    assert len(dets) == 1 and dets[0].is_right and list(dets[0].box) == [0, 0, 50, 60]
    (r,) = node.set_parameters([Parameter("tracking", value=True)])
    node._worker._apply_pending()
    assert r.successful and node.pipeline.tracker is not None and node.pipeline.smoother.config.beta == 5.0


def test_yaml_keys_reach_each_node_in_any_namespace(tmp_path):
    """The launch file may put the nodes in a namespace: the params file must still apply, each
    node taking its own section."""
    doc = yaml.safe_load(CONFIG.read_text())
    doc["/**/hand_mesh_node"]["ros__parameters"]["max_hands"] = 7
    doc["/**/hand_viz_node"]["ros__parameters"]["debug_image_scale"] = 0.5
    path = tmp_path / "hands.yaml"
    path.write_text(yaml.safe_dump(doc))
    for ns in ("", "/robot1/camera"):
        ctx = rclpy.Context()
        rclpy.init(args=["any", "--ros-args", "--params-file", str(path)], context=ctx)
        try:
            mesh = rclpy.create_node("hand_mesh_node", namespace=ns, context=ctx)
            viz = rclpy.create_node("hand_viz_node", namespace=ns, context=ctx)
            assert mesh.declare_parameter("max_hands", 2).value == 7, ns
            assert viz.declare_parameter("debug_image_scale", 1.0).value == 0.5, ns
            assert not viz.has_parameter("max_hands") and viz.declare_parameter("max_hands", 2).value == 2
            mesh.destroy_node()
            viz.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)


def test_startup_errors_name_the_fix(context, monkeypatch):
    with pytest.raises(StartupError, match="detector 'fixed' needs rois"):
        _make(context, detector="fixed")
    with pytest.raises(StartupError, match=r"'min_score'.*INTEGER.*decimal point"):
        _make(context, detector="fixed", rois=ROIS, min_score=1)
    with pytest.raises(StartupError, match="device must be auto, cpu"):
        _make(context, device="tpu")
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(StartupError, match="CUDA is not available.*use device cpu"):
            _make(context, device="cuda", detector="fixed", rois=ROIS)
    # the hand models' weights missing: the error says how to get them back
    from hamer_ros.perception.hand_models import runtime
    monkeypatch.setattr(runtime, "MODEL_DIR", runtime.MODEL_DIR / "nowhere")
    with pytest.raises(StartupError, match=r"hand model .* not found.*git checkout"):
        _make(context, detector="mediapipe", device="cpu")


def test_dependent_parameters_are_rejected_with_the_fix(context):
    with pytest.raises(StartupError, match="filter needs tracking"):
        _make(context, detector="fixed", rois=ROIS, tracking=False, filter=True)
    with pytest.raises(StartupError, match="hold_time needs filter"):
        _make(context, detector="fixed", rois=ROIS, filter=False, hold_time=0.2)
    n = _make(context, detector="fixed", rois=ROIS, tracking=False)      # a default never conflicts
    try:
        for name, value, reason in (("filter", True, "filter needs tracking"),
                                    ("hold_time", 0.3, "hold_time needs filter")):
            (r,) = n.set_parameters([Parameter(name, value=value)])
            assert not r.successful and reason in r.reason, (name, r.reason)
        results = n.set_parameters_atomically([Parameter("tracking", value=True), Parameter("filter", value=True)])
        assert results.successful, results.reason
    finally:
        n.close()
        n.destroy_node()


@pytest.mark.ros
def test_an_unknown_parameter_is_named_with_the_closest_one(tmp_path):
    from ament_index_python.packages import get_package_prefix
    exe = Path(get_package_prefix("hamer_ros"), "lib", "hamer_ros", "hand_mesh_node")
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RCUTILS_COLORIZED_OUTPUT="0",
               RCUTILS_LOGGING_BUFFERED_STREAM="0")
    env.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    env.pop("ROS_LOCALHOST_ONLY", None)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "detector": "fixed", "rois": ROIS, "max_hand": 3, "fliter_beta": 2.0, "zzz_unrelated": 1}}}))
    proc = subprocess.Popen([str(exe), "--ros-args", "--params-file", str(params), "-r", f"__ns:=/t{os.getpid()}/typo"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "active" in line and "hand_mesh_node]: active" in line:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    text = "".join(lines) + rest
    assert "parameter 'max_hand' is not a parameter of this node and is ignored; did you mean 'max_hands'?" in text
    assert "parameter 'fliter_beta' is not a parameter" in text and "did you mean 'filter_beta'?" in text
    assert "parameter 'zzz_unrelated' is not a parameter of this node and is ignored (the README" in text
    assert text.count("is not a parameter of this node") == 3 and proc.returncode == 0, text


@pytest.mark.ros
def test_fatal_start_exits_1_without_traceback(tmp_path):
    from ament_index_python.packages import get_package_prefix
    exe = Path(get_package_prefix("hamer_ros"), "lib", "hamer_ros", "hand_mesh_node")
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RCUTILS_COLORIZED_OUTPUT="0")
    env.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    env.pop("ROS_LOCALHOST_ONLY", None)
    out = subprocess.run([str(exe), "--ros-args", "-p", "detector:=fixed", "-r", f"__ns:=/t{os.getpid()}/fatal"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "[FATAL]" in text and "detector 'fixed' needs rois" in text and "Traceback" not in text


def test_cleanup_releases_the_model_and_configure_loads_it_again(context, tiny_checkpoint, mano_path):
    """In-process, so the model object itself can be watched: after cleanup nothing holds it (its
    CPU or GPU memory is free); a second configure builds a new one."""
    import gc
    import weakref

    from rclpy.lifecycle import TransitionCallbackReturn as R
    node = _make(context, checkpoint=str(tiny_checkpoint), mano=str(mano_path), device="cpu", detector="fixed",
                 rois=ROIS)
    try:
        model = weakref.ref(node.pipeline.model)
        thread = node._thread._thread
        assert node.pipeline.has_mesh and thread.is_alive()
        assert node.trigger_deactivate() == R.SUCCESS
        assert not thread.is_alive(), "deactivate returns before the thread has ended"
        assert node.pipeline is not None and model() is not None          # inactive: still loaded
        assert node.trigger_cleanup() == R.SUCCESS
        gc.collect()
        assert node.pipeline is None and model() is None, gc.get_referrers(model()) if model() else None
        node.start()
        assert node.pipeline.has_mesh and node.pipeline.model is not None
    finally:
        node.close()
        node.destroy_node()


def test_camera_rate_tells_lost_frames_from_the_stamps():
    from hamer_ros.ros.diagnostics import MIN_INPUT_FRACTION, camera_rate
    period = 10**9 // 30
    every = [i * period for i in range(60)]
    hz, fraction = camera_rate(every)
    assert hz == pytest.approx(30, rel=0.01) and fraction == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    kept = [s for s in every if rng.random() < 0.35]              # most frames lost on the way
    hz, fraction = camera_rate(kept)
    assert hz == pytest.approx(30, rel=0.01) and fraction < MIN_INPUT_FRACTION
    # a pause (camera stopped) and a restart going backwards are not losses
    paused = every[:30] + [every[29] + 5 * 10**9 + i * period for i in range(30)] + [0, period, 2 * period]
    assert camera_rate(paused)[1] == pytest.approx(1.0)
    assert camera_rate(every[:8]) == (None, None)
