"""The node's aligned depth input over real DDS with the installed node (use_depth): a depth image
of the colour frame's stamp (or one within depth_tolerance) anchors the hands on it, in either
encoding; a missing, late, foreign, differently sized or unreadable depth image leaves the frame
to RGB-only placement with a warning naming the problem; every output carries a colour image's
stamp. Then use_depth at run time, diagnostics, and the `depth_topic` launch argument on both
paths of `scripts/run.sh node` (the launch file run against stand-ins of launch/launch_ros, which
are not on PyPI; the executable path for real).

The node runs the tiny random-weight checkpoint with fixed boxes (no MediaPipe), tracking off,
so the same pixels always give the same RGB placement (about 0.59 m away for the test pattern
below); a flat depth image at another distance must move the hands there.
"""
from __future__ import annotations

import array
import importlib.util
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

try:
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from hamer_ros_msgs.msg import Hand as HandMsg

    from test_node import (FRAME, H, ROIS, RUN, W, Camera, NodeProcess, RosSide, tester, _image_for, _info_for, _ns,
                           _ros_env, _StandInPipeline, _stamp, _status, _test_pattern, _values)
except ImportError as exc:  # a ROS-free checkout: only the core's tests apply
    pytest.skip(f"ROS 2 not importable ({exc}); run `bash scripts/build_ros.sh && source scripts/env.sh` first",
                allow_module_level=True)

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
RGB, RGBD = HandMsg.PLACEMENT_RGB, HandMsg.PLACEMENT_RGBD
PIXELS = _test_pattern(3)
MS = 1_000_000
# Measured: on a flat depth image the anchored mesh's median vertex depth lies within 2 mm of the
# plane (the anchor sets the median of its visible surface on it), the residual is 6.3 mm (the
# synthetic hand's front surface is not flat); the margins below leave room for neither to drift.
PLANE_TOL = 0.01
RESIDUAL_MAX = 0.02
PLANES = (0.66, 0.68, 0.7, 0.75, 0.8, 0.85, 0.9)  # m, the flat depth images used below: a hand size
# within depth.SCALE_RANGE of the RGB one (about 0.59 m away)


class DepthCamera(Camera):
    """Camera + a depth publisher, created at the first depth image (so the node first sees none)."""

    def __init__(self, tester: RosSide, ns: str) -> None:
        super().__init__(tester, ns)
        self.ns = ns
        self.depth_pub = None
        self.depth_stamps: list[int] = []

    def depth(self, stamp_ns: int, values: np.ndarray, encoding: str, frame: str = FRAME) -> None:
        if self.depth_pub is None:
            self.depth_pub = self.tester.node.create_publisher(
                Image, f"{self.ns}/depth", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
            time.sleep(0.5)     # discovery, so the first images are not lost
        h, w = values.shape[:2]
        msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * values.itemsize
                    * (1 if values.ndim == 2 else values.shape[2]))
        msg.data = array.array("B", values.tobytes())
        msg.header.stamp = _stamp(stamp_ns)
        msg.header.frame_id = frame
        self.depth_pub.publish(msg)
        self.depth_stamps.append(stamp_ns)


def millimetres(metres: float, size: tuple[int, int] = (H, W)) -> np.ndarray:
    return np.full(size, round(metres * 1000), np.uint16)


def metres(value: float, size: tuple[int, int] = (H, W)) -> np.ndarray:
    return np.full(size, value, np.float32)


def plane(value: float, encoding: str = "16UC1", offset_ms: float = 0.0, frame: str = FRAME,
          size: tuple[int, int] = (H, W)) -> Callable[[DepthCamera, int], None]:
    """A flat depth image at `value` metres, published for a colour stamp (shifted by offset_ms)."""
    def send(camera: DepthCamera, stamp_ns: int) -> None:
        values = millimetres(value, size) if encoding == "16UC1" else metres(value, size)
        camera.depth(stamp_ns + int(offset_ms * MS), values, encoding, frame)
    return send


def serve(tester: RosSide, camera: DepthCamera, node: NodeProcess, depth: Callable[[DepthCamera, int], None] | None,
          frame: str = FRAME, timeout: float = 30.0) -> Any:
    """Publishes (depth, then) colour frames with new stamps until one comes back; returns its
    HandArray."""
    topic = f"{node.ns}/hands"
    sent: set[int] = set()
    start = len(tester.received(topic))

    def tick() -> None:
        # Frames well apart in time (the tick period): a depth image published for one frame,
        # even with an offset, is never the nearest for the next.
        stamp = max(camera.stamp_now(), max(camera.stamps + camera.depth_stamps, default=0) + 250 * MS)
        if depth is not None:
            depth(camera, stamp)
        sent.add(camera.image(pixels=PIXELS, stamp_ns=stamp, frame=frame))

    def back():
        return next((m for _, m in tester.inbox[topic][start:] if _ns(m.header) in sent), None)

    msg = tester.wait(back, timeout, f"a HandArray on {topic}", tick=tick, tick_period=0.3)
    node.assert_alive()
    assert len(msg.hands) == 2 and msg.header.frame_id == frame
    return msg


def joints(msg) -> np.ndarray:
    return np.array([[(p.x, p.y, p.z) for p in h.joints] for h in msg.hands])


def surface_depth(hand) -> float:
    return float(np.median(np.asarray(hand.vertices, np.float64).reshape(-1, 3)[:, 2]))


def assert_rgb(msg, reference) -> None:
    for h in msg.hands:
        assert h.placement == RGB and np.isnan(h.depth_residual), (h.placement, h.depth_residual)
    np.testing.assert_allclose(joints(msg), joints(reference), atol=1e-6)


def serve_on_depth(tester: RosSide, camera: DepthCamera, node: NodeProcess, depth: Callable[[DepthCamera, int], None],
                   tries: int = 5) -> Any:
    """serve(), repeated while the frame came back placed from RGB: a best-effort depth image may be
    lost in transport, or arrive before a new subscription has matched its publisher."""
    for _ in range(tries):
        msg = serve(tester, camera, node, depth)
        if all(h.placement == RGBD for h in msg.hands):
            break
    return msg


def fall_back(tester: RosSide, camera: DepthCamera, node: NodeProcess, depth: Callable[[DepthCamera, int], None],
              pattern: str, reference: Any, tries: int = 5) -> str:
    """Serves frames with this depth until the node warns `pattern` (a lost depth image warns
    otherwise); every frame is placed from RGB alone. Returns the warning line."""
    mark = len(node.output())
    for _ in range(tries):
        assert_rgb(serve(tester, camera, node, depth), reference)
        try:
            return node.wait_log(pattern, timeout=1.0, after=mark)
        except AssertionError:
            continue
    return node.wait_log(pattern, timeout=1.0, after=mark)


def assert_on_plane(msg, value: float) -> None:
    for h in msg.hands:
        assert h.placement == RGBD, "not placed on depth"
        assert 0.0 <= h.depth_residual < RESIDUAL_MAX, h.depth_residual
        assert surface_depth(h) == pytest.approx(value, abs=PLANE_TOL)
        assert h.wrist.position.z == pytest.approx(joints(msg)[list(msg.hands).index(h), 0, 2])


# ------------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def node(tester, tmp_path_factory, tiny_checkpoint, mano_path):
    proc = NodeProcess("depth", dict(checkpoint=str(tiny_checkpoint), mano=str(mano_path), device="cpu",
                                     detector="fixed", rois=ROIS, tracking=False, image_timeout=30.0,
                                     use_depth=True, depth_tolerance=0.02, diagnostics_period=0.5),
                       tmp_path_factory.mktemp("depth"))
    tester.subscribe(proc.ns, markers=False, debug=False)
    proc.wait_log(r"\]: active", timeout=60)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def camera(tester, node):
    cam = DepthCamera(tester, node.ns)
    cam.info()
    return cam


@pytest.fixture(scope="module")
def rgb_reference(tester, node, camera):
    """The hands of PIXELS placed from RGB alone (before any depth image exists)."""
    return serve(tester, camera, node, None)


# ------------------------------------------------------------------------------------------------
# the DDS node

def test_no_depth_yet_places_from_rgb_and_says_so(tester, node, camera, rgb_reference):
    assert f"depth={node.ns}/depth" in node.wait_log(r"\]: configured: ", timeout=1)
    for h in rgb_reference.hands:
        assert h.placement == RGB and np.isnan(h.depth_residual)
    # far from the planes used below, so a placement on them cannot pass by chance
    for h in rgb_reference.hands:
        assert min(abs(surface_depth(h) - p) for p in PLANES) > 5 * PLANE_TOL, surface_depth(h)
    line = node.wait_log(r"no depth image on \S+ yet", timeout=5)
    assert f"no depth image on {node.ns}/depth yet" in line and "RGB alone" in line
    assert "remap depth:=" in line and "aligned" in line


@pytest.mark.parametrize("value, encoding", [(0.8, "16UC1"), (0.68, "32FC1")])
def test_depth_places_the_hands(tester, node, camera, rgb_reference, value, encoding):
    msg = serve_on_depth(tester, camera, node, plane(value, encoding))
    assert_on_plane(msg, value)
    # the direction still comes from the image: the same 2D keypoints as from RGB alone
    np.testing.assert_allclose([h.keypoints_2d for h in msg.hands], [h.keypoints_2d for h in rgb_reference.hands])


def test_millimetres_and_metres_agree(tester, node, camera):
    a = serve_on_depth(tester, camera, node, plane(0.9, "16UC1"))
    b = serve_on_depth(tester, camera, node, plane(0.9, "32FC1"))
    assert_on_plane(a, 0.9)
    np.testing.assert_allclose(joints(a), joints(b), atol=1e-4)


def test_pairing_by_stamp(tester, node, camera, rgb_reference):
    # within depth_tolerance (20 ms), before or after: used
    assert_on_plane(serve_on_depth(tester, camera, node, plane(0.7, offset_ms=12)), 0.7)
    assert_on_plane(serve_on_depth(tester, camera, node, plane(0.75, offset_ms=-12)), 0.75)

    # the exact stamp wins over a neighbour, whichever arrives first
    def two(camera: DepthCamera, stamp_ns: int) -> None:
        plane(0.66, offset_ms=5)(camera, stamp_ns)
        plane(0.85)(camera, stamp_ns)
    assert_on_plane(serve_on_depth(tester, camera, node, two), 0.85)

    # only a depth image 100 ms older than the colour image: not this frame's, RGB alone, said so
    line = fall_back(tester, camera, node, plane(0.8, offset_ms=-100), r"no depth image on \S+ of frame",
                     rgb_reference)
    assert f"frame '{FRAME}' within depth_tolerance (20 ms)" in line and "100.0 ms before it" in line


@pytest.mark.parametrize("case, depth, pattern, needles", [
    ("size", plane(0.8, size=(H // 2, W // 2)), r"depth image of frame \S+ on \S+ is 160x120",
     ("is 160x120 px but the colour image is 320x240 px", "aligned_depth_to_color", "remap depth:=")),
    ("frame", plane(0.8, frame="camera_depth_optical_frame"), r"no depth image on \S+ for the colour image's frame",
     (f"frame '{FRAME}'", "'camera_depth_optical_frame'", "aligned to the colour camera")),
    ("encoding", lambda cam, stamp: cam.depth(stamp, PIXELS, "rgb8"), r"unusable depth image on",
     (f"frame '{FRAME}'", "encoding 'rgb8' is not supported", "16UC1 or mono16 (millimetres), 32FC1 (metres)",
      "this is a colour image")),
])
def test_unusable_depth_falls_back_to_rgb_with_a_warning(tester, node, camera, rgb_reference, case, depth, pattern,
                                                         needles):
    line = fall_back(tester, camera, node, depth, pattern, rgb_reference)
    for needle in needles:
        assert needle in line, (needle, line)
    assert "RGB alone" in line
    # good depth again: placed on it
    assert_on_plane(serve_on_depth(tester, camera, node, plane(0.8)), 0.8)


def test_a_stream_of_frames_keeps_the_newest_frame_policy(tester, node, camera):
    topic = f"{node.ns}/hands"
    start = len(tester.received(topic))
    stamps = []
    for _ in range(60):
        stamp = camera.stamp_now()
        plane(0.8)(camera, stamp)
        stamps.append(camera.image(pixels=PIXELS, stamp_ns=stamp))
    last = tester.wait(lambda: next((m for _, m in tester.inbox[topic][start:] if _ns(m.header) == stamps[-1]),
                                    None), 30, "the HandArray of the last frame")
    assert_on_plane(last, 0.8)
    got = [_ns(m.header) for m in tester.received(topic)[start:]]
    assert got == sorted(got) and set(got) <= set(stamps)


def test_every_output_carries_a_colour_stamp(tester, node, camera):
    msgs = tester.received(f"{node.ns}/hands")
    assert len(msgs) > 10
    stamps = {_ns(m.header) for m in msgs}
    assert stamps <= set(camera.stamps), "a HandArray under a stamp no colour image had"
    depth_only = set(camera.depth_stamps) - set(camera.stamps)
    assert depth_only and not stamps & depth_only
    assert all(m.header.frame_id == FRAME for m in msgs)


def test_diagnostics_count_depth(tester, node):
    def counted(s) -> bool:
        v = _values(s)
        return int(v["frames with depth"]) >= 10 and int(v["frames without depth (fallback)"]) >= 5

    v = _values(tester.wait(lambda: [s for s in _status(tester, node.fqn) if counted(s)], 10, "depth diagnostics")[-1])
    assert v["depth"] == f"{node.ns}/depth"
    assert int(v["depth images received"]) >= int(v["frames with depth"])
    assert int(v["hands placed on depth"]) == 2 * int(v["frames with depth"])   # both hands, every time
    assert "RGB alone" in v["last depth fallback reason"]


def test_use_depth_at_run_time(tester, node, camera, rgb_reference):
    (bad,) = tester.set_parameters(node.fqn, depth_tolerance=2.0)
    assert not bad.successful and "depth_tolerance" in bad.reason
    (ok,) = tester.set_parameters(node.fqn, use_depth=False)
    assert ok.successful
    mark = len(node.output())
    # depth still published, but not subscribed: RGB, and nothing to warn about
    assert_rgb(serve(tester, camera, node, plane(0.8)), rgb_reference)
    assert_rgb(serve(tester, camera, node, plane(0.8)), rgb_reference)
    assert "RGB alone" not in node.output()[mark:]
    tester.wait(lambda: [s for s in _status(tester, node.fqn) if _values(s)["depth"] == "off"], 5, "depth off")
    assert all(r.successful for r in tester.set_parameters(node.fqn, use_depth=True, depth_tolerance=0.05))
    # the subscription is made again: within depth_tolerance (now 50 ms) of 40 ms
    assert_on_plane(serve_on_depth(tester, camera, node, plane(0.8, offset_ms=40)), 0.8)


def test_clean_shutdown(node):
    rc = node.stop(signal.SIGINT)
    assert rc == 0 and "Traceback" not in node.output(), node.output()[-3000:]


# ------------------------------------------------------------------------------------------------
# in-process: how long a frame waits for its depth image (a stand-in pipeline records what it got)

class _DepthStandIn(_StandInPipeline):
    def __init__(self) -> None:
        super().__init__()
        self.depths: list[Any] = []

    def __call__(self, image, K, dist=None, stamp=None, **kw):
        self.depths.append(kw.get("depth", "not passed"))
        return super().__call__(image, K, dist, stamp)


def _depth_for(stamp_ns: int, mm: int = 800) -> Image:
    msg = Image(width=W, height=H, encoding="16UC1", step=W * 2)
    msg.data = array.array("B", np.full((H, W), mm, np.uint16).tobytes())
    msg.header.stamp = _stamp(stamp_ns)
    msg.header.frame_id = FRAME
    return msg


def _inproc(tester, name: str, **params: Any):
    from hamer_ros.ros.node import HandMeshNode
    pipe = _DepthStandIn()
    overrides = [Parameter("detector", value="fixed"), Parameter("rois", value=ROIS)]
    node = HandMeshNode(pipeline=pipe, context=tester.context, namespace=f"/{RUN}/{name}",
                        parameter_overrides=overrides + [Parameter(k, value=v) for k, v in params.items()])
    node.start()
    return node, pipe


def test_a_frame_waits_for_its_depth_but_never_past_the_tolerance(tester):
    node, pipe = _inproc(tester, "depth_wait", use_depth=True, depth_tolerance=0.6)
    try:
        assert node._depth_sub is not None
        node._on_camera_info(_info_for(0))
        node._on_depth(_depth_for(100 * MS))                        # the stream runs
        # the depth image arrives 50 ms after its colour image: the frame waits for it
        threading.Timer(0.05, lambda: node._on_depth(_depth_for(200 * MS, mm=900))).start()
        t0 = time.monotonic()
        assert node._worker.process(_image_for(200 * MS), t0) is not None
        assert 0.04 < time.monotonic() - t0 < 0.5
        np.testing.assert_allclose(pipe.depths[-1], 0.9)
        # never arrives: placed from RGB alone once depth_tolerance has passed since its arrival
        t0 = time.monotonic()
        assert node._worker.process(_image_for(1000 * MS), t0 - 0.3) is not None
        assert 0.25 < time.monotonic() - t0 < 0.55    # 0.3 s left of the 0.6 s
        assert isinstance(pipe.depths[-1], str)      # no depth= at all
        assert "within depth_tolerance" in node._stats.last_depth_problem
        # a newer colour frame ends the wait at once (the newest frame wins); a worker with a
        # mailbox of its own, which the node's worker thread does not empty
        from hamer_ros.ros.sync import LatestMailbox
        from hamer_ros.ros.worker import InferenceWorker
        own = InferenceWorker(node._ctx, LatestMailbox(), threading.Event(), options=lambda: node._opts,
                              take_pending=dict, context_ok=lambda: True)
        own.mailbox.put((_image_for(2100 * MS), time.monotonic()))
        t0 = time.monotonic()
        own.process(_image_for(2000 * MS), t0)
        assert time.monotonic() - t0 < 0.25
    finally:
        node.close()
        node.destroy_node()


def test_off_by_default(tester):
    node, pipe = _inproc(tester, "depth_off")
    try:
        assert node._depth_sub is None and node._values["use_depth"] is False
        node._on_camera_info(_info_for(0))
        assert node._worker.process(_image_for(100 * MS), time.monotonic()) is not None
        assert pipe.depths == ["not passed"]      # an injected pipeline need not know `depth=`
    finally:
        node.close()
        node.destroy_node()


# ------------------------------------------------------------------------------------------------
# depth_topic:=... on both paths of `scripts/run.sh node`

class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: Any) -> str:
        return context.arguments[self.name]

    def __repr__(self) -> str:
        return f"LaunchConfiguration({self.name!r})"


class _Action:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


def _launch_actions(monkeypatch, **arguments: str) -> list[_Action]:
    """Runs launch/hands.launch.py's _launch_setup against stand-ins of launch and launch_ros and
    returns the actions it builds."""
    fakes = {"launch": types.ModuleType("launch"), "launch.actions": types.ModuleType("launch.actions"),
             "launch.substitutions": types.ModuleType("launch.substitutions"),
             "launch_ros": types.ModuleType("launch_ros"), "launch_ros.actions": types.ModuleType("launch_ros.actions")}
    fakes["launch"].LaunchDescription = _Action
    for name in ("DeclareLaunchArgument", "LogInfo", "OpaqueFunction"):
        setattr(fakes["launch.actions"], name, _Action)
    fakes["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    fakes["launch_ros.actions"].Node = _Action
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("hands_launch_under_test", ROOT / "launch" / "hands.launch.py")
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    monkeypatch.setattr(launch, "get_package_share_directory", lambda package: "/share/hamer_ros")
    defaults = {a.args[0]: a.kwargs["default_value"] for a in launch.generate_launch_description().args[0]
                if a.args}
    context = types.SimpleNamespace(arguments={**defaults, **arguments}, environment={})
    return launch._launch_setup(context)


def _launch_node_action(monkeypatch, **arguments: str) -> _Action:
    (node,) = [a for a in _launch_actions(monkeypatch, **arguments) if a.kwargs.get("executable") == "hand_mesh_node"]
    return node


def _remaps(node: _Action) -> dict[str, str]:
    return {k: v if isinstance(v, str) else repr(v) for k, v in node.kwargs["remappings"]}


def test_launch_depth_topic_remaps_and_enables_depth(monkeypatch):
    node = _launch_node_action(monkeypatch, depth_topic="/camera/aligned_depth_to_color/image_raw")
    assert _remaps(node)["depth"] == "/camera/aligned_depth_to_color/image_raw"
    assert _remaps(node)["image"] == "/camera/color/image_raw"      # the default, as run.sh applies it
    assert node.kwargs["parameters"][1] == {"use_depth": True}
    # empty (the default): no remap, and use_depth as the params file has it
    node = _launch_node_action(monkeypatch)
    assert "depth" not in _remaps(node) and "use_depth" not in node.kwargs["parameters"][1]


def test_launch_starts_the_viz_node_beside_unless_visualize_is_false(monkeypatch):
    actions = _launch_actions(monkeypatch, namespace="robot1", image_topic="/cam/image", camera_info_topic="/cam/info",
                              depth_topic="/cam/depth")
    by_exe = {a.kwargs.get("executable"): a for a in actions}
    mesh, viz = by_exe["hand_mesh_node"], by_exe["hand_viz_node"]
    assert viz.kwargs["namespace"] == mesh.kwargs["namespace"] == "robot1"
    # the same image, CameraInfo and params file; not the perception node's depth or overrides
    assert _remaps(viz) == {"image": "/cam/image", "camera_info": "/cam/info"}
    assert viz.kwargs["parameters"] == [mesh.kwargs["parameters"][0]]
    assert viz.kwargs["additional_env"] == {k: v for k, v in mesh.kwargs["additional_env"].items()
                                           if k != "HAMER_ROS_ARGS"}   # the same Fast DDS profile
    execs = [a.kwargs.get("executable") for a in _launch_actions(monkeypatch, visualize="false")]
    assert "hand_mesh_node" in execs and "hand_viz_node" not in execs


def test_run_sh_depth_topic(tmp_path):
    if shutil.which("ros2") and importlib.util.find_spec("launch_ros"):
        pytest.skip("with a system ROS, run.sh node is `ros2 launch` itself (its launch file is tested above)")
    ns = f"{RUN}/runsh_depth"
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "run.sh"), "node", f"namespace:={ns}",
                                 f"depth_topic:=/{ns}/camera/aligned_depth"],
                                stdout=log, stderr=subprocess.STDOUT, env=_ros_env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while "]: configured: " not in log_path.read_text(errors="replace") and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        out = log_path.read_text(errors="replace")
        line = next((s for s in out.splitlines() if "]: configured: " in s), None)
        assert line is not None, out[-3000:]
        assert f"depth=/{ns}/camera/aligned_depth" in line, line
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
    assert rc == 0 and "Traceback" not in log_path.read_text(errors="replace")
