"""hand_mesh_node end to end: the INSTALLED executable in a subprocess, real rclpy, real DDS.

A test-side rclpy node publishes Image + CameraInfo and subscribes to every output. Processes:
one mesh node (tiny checkpoint, fixed ROIs) runs the good / bad input sequence and the flood;
one MediaPipe joints-only node reads test1.jpg; two short-lived nodes load a missing and a
corrupt checkpoint. Each node runs in its own namespace, so its topics and its diagnostics status
are its own; /tf is shared, told apart by tf_prefix.

Needs the built environment: `bash scripts/build_ros.sh && source scripts/env.sh`.
"""
from __future__ import annotations

import array
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

try:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rcl_interfaces.srv import ListParameters, SetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from tf2_msgs.msg import TFMessage
    from visualization_msgs.msg import MarkerArray

    from hamer_ros_msgs.msg import Hand as HandMsg
    from hamer_ros_msgs.msg import HandArray
except ImportError as exc:  # a ROS-free checkout: only the core's tests apply
    pytest.skip(f"ROS 2 not importable ({exc}); run `bash scripts/build_ros.sh && source scripts/env.sh` first",
                allow_module_level=True)

pytestmark = pytest.mark.ros

RUN = f"t{os.getpid()}"
W, H = 320, 240
K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
FRAME = "camera_color_optical_frame"
ROIS = "[{box: [30, 50, 130, 170], side: left}, {box: [180, 50, 280, 170], side: right}]"


def _node_executable(name: str = "hand_mesh_node") -> Path:
    from ament_index_python.packages import get_package_prefix
    exe = Path(get_package_prefix("hamer_ros"), "lib", "hamer_ros", name)
    if not exe.is_file():
        pytest.skip(f"{exe} not installed; run `bash scripts/build_ros.sh`")
    return exe


def _ros_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    env.pop("ROS_LOCALHOST_ONLY", None)
    # Unbuffered, uncoloured logs, so the test can read them while the node runs.
    env.update(RCUTILS_LOGGING_BUFFERED_STREAM="0", RCUTILS_COLORIZED_OUTPUT="0", PYTHONUNBUFFERED="1")
    return env


def mesh_params(tiny_checkpoint: Path, mano_path: Path, **extra: Any) -> dict[str, Any]:
    """A mesh node on the tiny checkpoint, fixed boxes, the CPU (other test modules use it too)."""
    return dict(checkpoint=str(tiny_checkpoint), mano=str(mano_path), device="cpu", detector="fixed", rois=ROIS,
                image_timeout=30.0, diagnostics_period=0.3, **extra)


# ------------------------------------------------------------------------------------------------
# the node under test, as a subprocess

class NodeProcess:
    def __init__(self, name: str, params: dict[str, Any], tmp: Path, command: list[str] | None = None,
                 unset: tuple[str, ...] = (), ns: str | None = None) -> None:
        """`command`: how to start the node (default: the installed hand_mesh_node); `unset`:
        environment variables the node must not see; `ns`: its namespace (default /<run>/<name>)."""
        self.name = name
        self.ns = ns or f"/{RUN}/{name}"
        self.fqn = f"{self.ns}/hand_mesh_node"
        params_file = tmp / f"{name}.yaml"
        params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
        self.log_path = tmp / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*(command or [str(_node_executable())]), "--ros-args", "--params-file", str(params_file), "-r", f"__ns:={self.ns}"],
            stdout=self._log, stderr=subprocess.STDOUT, env={k: v for k, v in _ros_env().items() if k not in unset})

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 15.0, after: int = 0) -> str:
        """Waits for a log line matching the regex (searching from character `after`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            m = re.search(pattern, out[after:])
            if m:
                return out[after:][m.start():].splitlines()[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no log line matching {pattern!r} within {timeout} s "
                             f"(exit code {self.proc.poll()}); log:\n{self.output()[-4000:]}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, f"{self.name} exited ({self.proc.returncode}):\n{self.output()[-4000:]}"


# ------------------------------------------------------------------------------------------------
# the test side: one rclpy node, spun in a background thread

class RosSide:
    def __init__(self) -> None:
        env = _ros_env()
        for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID"):   # read by rcl at init
            os.environ[k] = env[k]
        os.environ.pop("ROS_LOCALHOST_ONLY", None)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("hand_mesh_tester", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.inbox: dict[str, list] = {}
        self.tf: list[TFMessage] = []
        self.diagnostics: list[DiagnosticArray] = []
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(TFMessage, "/tf", self._keep(self.tf), reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._keep(self.diagnostics), reliable)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._running = True
        self._spin.start()

    def _spin_loop(self) -> None:
        while self._running and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 -- shutting down
                break

    def _keep(self, into: list) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            with self.lock:
                into.append((time.time(), msg))
        return cb

    def subscribe(self, ns: str, markers: bool = True, debug: bool = True) -> None:
        reliable = QoSProfile(depth=300, reliability=ReliabilityPolicy.RELIABLE)
        viewer = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)   # the debug images
        for topic, cls, on, qos in (("hands", HandArray, True, reliable), ("hands/markers", MarkerArray, markers, reliable),
                                    ("hands/debug_image", Image, debug, viewer),
                                    ("hands/debug_image/compressed", CompressedImage, debug, viewer)):
            if on:
                self.inbox[f"{ns}/{topic}"] = []
                self.node.create_subscription(cls, f"{ns}/{topic}", self._keep(self.inbox[f"{ns}/{topic}"]), qos)

    def received(self, topic: str) -> list:
        with self.lock:
            return [m for _, m in self.inbox[topic]]

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str, tick: Callable[[], None] | None = None,
             tick_period: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout
        next_tick = 0.0
        while time.monotonic() < deadline:
            with self.lock:
                result = predicate()
            if result:
                return result
            if tick is not None and time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + tick_period
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def close(self) -> None:
        self._running = False
        self._spin.join(5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    # -- services of the node under test
    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0, idempotent: bool = True) -> Any:
        """The reply to `request`. An idempotent request is sent again every 2 s until one reply
        comes: just after wait_for_service a reply can still be lost (the service's reply path to
        a new client may not be matched yet, seen with Fast DDS)."""
        client = self.node.create_client(srv_type, name)
        futures: list[Any] = []
        send = lambda: futures.append(client.call_async(request))    # noqa: E731
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            if not idempotent:
                send()
            done = self.wait(lambda: next((f for f in futures if f.done()), None), timeout, f"the reply of {name}",
                             tick=send if idempotent else None, tick_period=2.0)
            return done.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, fqn: str, **values: Any) -> list:
        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return self.call(SetParameters, f"{fqn}/set_parameters", req).results


class Camera:
    """Publishes images and CameraInfo for one node under test."""

    def __init__(self, tester: RosSide, ns: str, image_reliability=ReliabilityPolicy.RELIABLE) -> None:
        self.tester = tester
        node = tester.node
        self.image_pub = node.create_publisher(Image, f"{ns}/image",
                                               QoSProfile(depth=5, reliability=image_reliability))
        # Latched, as many camera drivers do: the node under test must still get it.
        self.info_pub = node.create_publisher(CameraInfo, f"{ns}/camera_info", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.stamps: list[int] = []

    @staticmethod
    def stamp_now() -> int:
        return time.time_ns()

    def info(self, K: np.ndarray = K, frame: str = FRAME, w: int = W, h: int = H) -> None:
        msg = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
        msg.header.frame_id = frame
        msg.header.stamp = _stamp(self.stamp_now())
        msg.k = np.asarray(K, dtype=np.float64).ravel()
        msg.d = [0.0] * 5
        msg.p = np.hstack([np.asarray(K, dtype=np.float64), np.zeros((3, 1))]).ravel()
        self.info_pub.publish(msg)

    def image(self, pixels: np.ndarray | None = None, encoding: str = "rgb8", stamp_ns: int | None = None,
              frame: str = FRAME, step: int | None = None, data: bytes | None = None,
              size: tuple[int, int] | None = None) -> int:
        if pixels is None:
            pixels = _test_pattern(stamp_ns or len(self.stamps))
        h, w = size if size is not None else pixels.shape[:2]
        c = 1 if pixels.ndim == 2 else pixels.shape[2]
        msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0,
                    step=step if step is not None else w * c * pixels.itemsize)
        msg.data = array.array("B", data if data is not None else pixels.tobytes())
        stamp_ns = self.stamp_now() if stamp_ns is None else stamp_ns
        msg.header.stamp = _stamp(stamp_ns)
        msg.header.frame_id = frame
        self.image_pub.publish(msg)
        self.stamps.append(stamp_ns)
        return stamp_ns


def _stamp(ns: int):
    from builtin_interfaces.msg import Time
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def _ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def _test_pattern(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed % 2**32)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _status(tester: RosSide, fqn: str) -> list:
    return [s for _, d in tester.diagnostics for s in d.status if s.name.startswith(fqn + ":")]


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


# ------------------------------------------------------------------------------------------------
# fixtures (`tester` is imported by the other ROS test modules too)

@pytest.fixture(scope="module")
def tester():
    t = RosSide()
    yield t
    t.close()


@pytest.fixture(scope="module")
def node_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hand_mesh_node")


@pytest.fixture(scope="module")
def mesh_node(tester, node_tmp, tiny_checkpoint, mano_path):
    proc = NodeProcess("mesh", dict(checkpoint=str(tiny_checkpoint), mano=str(mano_path), device="cpu",
                                    detector="fixed", rois=ROIS, tf_prefix="mesh/", camera_info_timeout=2.0,
                                    image_timeout=1.0, diagnostics_period=0.5), node_tmp)
    tester.subscribe(proc.ns, markers=False, debug=False)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def camera(tester, mesh_node):
    # Only after the node has said that nobody publishes its images (image_timeout: 1 s).
    mesh_node.wait_log(r"no publisher on", timeout=30)
    return Camera(tester, mesh_node.ns)


def _serve_good_frame(tester: RosSide, camera: Camera, node: NodeProcess, timeout: float = 20.0, **kw) -> Any:
    """Publishes good frames (new stamps) until one of them comes back as a HandArray; returns it."""
    topic = f"{node.ns}/hands"
    sent: set[int] = set()
    start = len(tester.received(topic))

    def back():
        return next((m for m in tester.inbox[topic][start:] if _ns(m[1].header) in sent), None)

    got = tester.wait(back, timeout, f"a HandArray on {topic} for a good frame", tick=lambda: sent.add(camera.image(**kw)))
    node.assert_alive()
    return got[1]


# ------------------------------------------------------------------------------------------------
# mesh node: outputs

def test_no_camera_info_yet_is_reported(tester, mesh_node, camera):
    # Before any CameraInfo: frames are skipped with a clear message. (The node also warned that
    # nobody published images during its first second.)
    assert f"no publisher on {mesh_node.ns}/image" in mesh_node.output()
    deadline = time.monotonic() + 20
    while "no CameraInfo on" not in mesh_node.output() and time.monotonic() < deadline:
        camera.image()
        time.sleep(0.2)
    line = mesh_node.wait_log(r"no CameraInfo on", timeout=1)
    assert f"{mesh_node.ns}/camera_info" in line and "remap camera_info:=" in line.lower()
    assert not tester.received(f"{mesh_node.ns}/hands"), "a frame without intrinsics was published"


def test_hands_tf_faces_diagnostics(tester, mesh_node, camera):
    camera.info()
    msg = _serve_good_frame(tester, camera, mesh_node)
    stamp = _ns(msg.header)
    assert msg.header.frame_id == FRAME
    assert [h.side for h in msg.hands] == [HandMsg.LEFT, HandMsg.RIGHT]
    for h in msg.hands:
        joints = np.array([(p.x, p.y, p.z) for p in h.joints])
        assert np.all(np.isfinite(joints)) and np.all(joints[:, 2] > 0), joints
        assert h.has_mesh and len(h.vertices) == 778 * 3 and np.all(np.isfinite(h.vertices))
        assert h.wrist.position.z == pytest.approx(joints[0, 2])
        q = h.wrist.orientation
        assert q.x**2 + q.y**2 + q.z**2 + q.w**2 == pytest.approx(1.0)
        assert np.any(h.global_orient) and np.any(h.hand_pose)

    # TF: camera frame -> mesh/<side>_hand/wrist, with the image's stamp
    def tf_for_stamp():
        return [t for _, m in tester.tf for t in m.transforms
                if _ns(t.header) == stamp and t.child_frame_id.startswith("mesh/")]
    transforms = tester.wait(tf_for_stamp, 5, "TF for the frame")
    assert sorted(t.child_frame_id for t in transforms) == ["mesh/left_hand/wrist", "mesh/right_hand/wrist"]
    assert all(t.header.frame_id == FRAME for t in transforms)
    by_child = {t.child_frame_id: t for t in transforms}
    tr = by_child["mesh/left_hand/wrist"].transform.translation
    assert (tr.x, tr.y, tr.z) == pytest.approx((msg.hands[0].wrist.position.x, msg.hands[0].wrist.position.y,
                                                msg.hands[0].wrist.position.z))

    # The mesh's triangles, latched: a subscriber that comes now still gets them, once
    from hamer_ros_msgs.msg import MeshFaces
    faces: list = []
    sub = tester.node.create_subscription(MeshFaces, f"{mesh_node.ns}/hands/mesh_faces", faces.append, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    try:
        tester.wait(lambda: faces, 10, "the latched mesh faces")
    finally:
        tester.node.destroy_subscription(sub)
    right = np.asarray(faces[0].right).reshape(-1, 3)
    left = np.asarray(faces[0].left).reshape(-1, 3)
    assert right.shape == (1538, 3) and faces[0].num_vertices == 778 and right.max() == 777
    np.testing.assert_array_equal(left, right[:, [0, 2, 1]])        # a mirrored hand: each winding reversed

    status = tester.wait(lambda: [s for s in _status(tester, mesh_node.fqn)
                                  if float(_values(s)["processing rate [Hz]"]) > 0], 10, "diagnostics")[-1]
    values = _values(status)
    assert values["model"] == "mesh" and values["device"] == "cpu" and values["backend"] == "eager"
    assert int(values["frames processed"]) >= 1 and status.level == DiagnosticStatus.OK, (status.message, values)
    for key in ("stage detect [ms]", "stage forward [ms]", "stage mano [ms]", "end-to-end latency mean [ms]",
                "node overhead [ms]", "frames dropped"):
        assert key in values, key


def test_parameters_via_services(tester, mesh_node, camera):
    from hamer_ros.settings import PARAMETERS

    names = set(tester.call(ListParameters, f"{mesh_node.fqn}/list_parameters", ListParameters.Request()).result.names)
    assert {p.name for p in PARAMETERS} <= names

    def result(**kw):
        (r,) = tester.set_parameters(mesh_node.fqn, **kw)
        return r

    bad = result(min_score=2.0)
    assert not bad.successful and "min_score" in bad.reason
    bad = result(tf_prefix="/abs")
    assert not bad.successful and "must not start with '/'" in bad.reason
    bad = result(rois="[{box: [5, 5, 1, 1], side: left}]")
    assert not bad.successful and "non-positive width" in bad.reason
    bad = result(camera_info_sync="approximate")
    assert not bad.successful and "latest, exact" in bad.reason
    bad = result(detector="mediapipe")
    assert not bad.successful and "read-only" in bad.reason.lower()

    # runtime changes take effect: one hand, then joint frames on TF
    assert result(max_hands=1).successful and result(publish_joint_frames=True).successful
    msg = _serve_good_frame(tester, camera, mesh_node)
    assert len(msg.hands) == 1
    stamp = _ns(msg.header)
    children = tester.wait(lambda: [t.child_frame_id for _, m in tester.tf for t in m.transforms
                                    if _ns(t.header) == stamp and t.child_frame_id.startswith("mesh/")],
                           5, "TF with joint frames")
    assert len(children) == 22 and f"mesh/{'left' if msg.hands[0].side == 0 else 'right'}_hand/joint_20" in children
    assert result(max_hands=2).successful and result(publish_joint_frames=False).successful
    assert len(_serve_good_frame(tester, camera, mesh_node).hands) == 2


# ------------------------------------------------------------------------------------------------
# mesh node: bad input, each followed by a good frame

def _bad_then_good(tester, camera, node, send_bad: Callable[[], Any], pattern: str,
                   repair: Callable[[], Any] | None = None) -> str:
    """Sends bad input until the node logs `pattern`, then (after `repair`) checks that the next
    good frame is served. Returns the log line."""
    mark = len(node.output())
    deadline = time.monotonic() + 10
    while not re.search(pattern, node.output()[mark:]) and time.monotonic() < deadline:
        send_bad()          # repeated: best-effort delivery, and the node may be busy
        time.sleep(0.2)
    line = node.wait_log(pattern, timeout=1, after=mark)
    if repair is not None:
        repair()
        time.sleep(0.1)
    _serve_good_frame(tester, camera, node)
    return line


def test_bad_images_are_reported_and_skipped(tester, mesh_node, camera):
    camera.info()
    line = _bad_then_good(tester, camera, mesh_node,
                          lambda: camera.image(np.zeros((H, W), np.uint16), encoding="16UC1"),
                          r"encoding '16UC1' is not supported")
    assert "rgb8, bgr8, rgba8, bgra8, mono8" in line and "depth" in line
    _bad_then_good(tester, camera, mesh_node,
                   lambda: camera.image(data=bytes(W * H * 3 - 10)), r"data holds \d+ bytes but needs \d+")
    _bad_then_good(tester, camera, mesh_node,
                   lambda: camera.image(step=W * 3 - 1), r"step \d+ bytes is smaller than width x bytes per pixel")
    _bad_then_good(tester, camera, mesh_node,
                   lambda: camera.image(np.zeros((0, 0, 3), np.uint8)), r"empty image \(0x0 px")
    # the other encodings are served
    rgb = _test_pattern(5)
    for enc, px in (("bgr8", rgb[..., ::-1].copy()), ("mono8", rgb[..., 0].copy()),
                    ("bgra8", np.dstack([rgb[..., ::-1], rgb[..., :1]]))):
        assert len(_serve_good_frame(tester, camera, mesh_node, pixels=px, encoding=enc).hands) == 2


def test_bad_intrinsics_are_reported_and_skipped(tester, mesh_node, camera):
    def with_info(Kbad):
        def send():
            camera.info(Kbad)
            time.sleep(0.05)
            camera.image()
        return send
    line = _bad_then_good(tester, camera, mesh_node, with_info(np.zeros((3, 3))), r"unusable camera intrinsics",
                          repair=camera.info)
    assert "all zeros" in line and "skipping the frame" in line
    nan_k = K.copy()
    nan_k[0, 0] = np.nan
    line = _bad_then_good(tester, camera, mesh_node, with_info(nan_k), r"unusable camera intrinsics.*NaN",
                          repair=camera.info)
    assert "skipping the frame" in line
    # An image of a frame no CameraInfo names is never placed with another camera's intrinsics
    # (test_node_cameras.py has the rest)
    mark = len(mesh_node.output())
    stamp = camera.image(frame="other_camera_frame")
    line = mesh_node.wait_log(r"for the image's frame 'other_camera_frame'", after=mark, timeout=10)
    assert "skipping the frame" in line
    assert stamp not in {_ns(m.header) for m in tester.received(f"{mesh_node.ns}/hands")}


def test_stamps_going_backwards(tester, mesh_node, camera):
    camera.info()
    newest = _ns(_serve_good_frame(tester, camera, mesh_node).header)
    earlier = newest - 60 * 10**9      # a bag that looped a minute back
    mark = len(mesh_node.output())
    msg = _serve_good_frame(tester, camera, mesh_node, stamp_ns=earlier)
    # the node still processes it, under exactly that stamp
    assert _ns(msg.header) == earlier and len(msg.hands) == 2
    line = mesh_node.wait_log(r"stamps went backwards", after=mark, timeout=5)
    assert "start afresh" in line
    _serve_good_frame(tester, camera, mesh_node)


# ------------------------------------------------------------------------------------------------
# mesh node: flood

def test_flood_newest_frame_wins(tester, mesh_node, camera):
    camera.info()
    _serve_good_frame(tester, camera, mesh_node)
    time.sleep(0.5)
    rss_before = mesh_node.rss_kib()
    topic = f"{mesh_node.ns}/hands"
    start = len(tester.received(topic))
    dropped_before = int(_values(_status(tester, mesh_node.fqn)[-1])["frames dropped"])
    frame = _test_pattern(1)
    stamps = [camera.image(frame) for _ in range(200)]
    last = stamps[-1]
    got = tester.wait(lambda: any(_ns(m[1].header) == last for m in tester.inbox[topic][start:]), 30,
                      "the HandArray of the last flooded frame (newest frame wins)")
    assert got
    t_last = next(t for t, m in tester.inbox[topic][start:] if _ns(m.header) == last)
    latency = t_last - last / 1e9
    arrived = [m for m in tester.received(topic)[start:] if _ns(m.header) in set(stamps)]
    rss_after = mesh_node.rss_kib()
    # Diagnostics after the flood report the drops.
    tester.wait(lambda: int(_values(_status(tester, mesh_node.fqn)[-1])["frames dropped"]) > dropped_before, 5,
                "the drop count in diagnostics")
    mesh_node.assert_alive()
    assert len(arrived) < 200, "every frame was processed: nothing was dropped"
    assert latency < 5.0, f"the newest frame took {latency:.2f} s"
    assert [_ns(m.header) for m in arrived] == sorted(_ns(m.header) for m in arrived)   # in order
    assert rss_after - rss_before < 64 * 1024, f"RSS grew {rss_before} -> {rss_after} KiB"
    print(f"flood: {len(arrived)}/200 processed, last-frame latency {latency * 1e3:.0f} ms, "
          f"RSS {rss_before} -> {rss_after} KiB")


def test_clean_shutdown(mesh_node):
    rc = mesh_node.stop(signal.SIGINT)
    out = mesh_node.output()
    assert rc == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


# ------------------------------------------------------------------------------------------------
# MediaPipe, joints-only

def test_mediapipe_joints_only_two_right_hands(tester, node_tmp, examples):
    import cv2
    img = cv2.cvtColor(cv2.imread(str(examples / "test1.jpg")), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    # reliable: a 1.4 MB image is larger than Fast DDS's shared-memory segment, and its UDP
    # fragments get lost under best effort on an untuned machine
    node = NodeProcess("mediapipe", dict(detector="mediapipe", device="cpu", max_hands=2, qos_reliability="reliable",
                                         tf_prefix="mp/", image_timeout=30.0), node_tmp)
    try:
        tester.subscribe(node.ns, markers=False, debug=False)
        cam = Camera(tester, node.ns)
        Kmp = np.array([[1000.0, 0, w / 2], [0, 1000.0, h / 2], [0, 0, 1]])
        cam.info(Kmp, w=w, h=h)
        topic = f"{node.ns}/hands"
        msg = tester.wait(lambda: next((m for _, m in tester.inbox[topic] if len(m.hands) == 2), None), 60,
                          "a HandArray with two hands from MediaPipe", tick=lambda: cam.image(img), tick_period=0.5)
        assert [h.side for h in msg.hands] == [HandMsg.RIGHT, HandMsg.RIGHT]
        assert not any(h.has_mesh for h in msg.hands) and all(len(h.vertices) == 0 for h in msg.hands)
        for h in msg.hands:
            j = np.array([(p.x, p.y, p.z) for p in h.joints])
            assert np.all(np.isfinite(j)) and np.all(j[:, 2] > 0)
        boxes = sorted(tuple(h.box) for h in msg.hands)
        assert boxes[0][0] == pytest.approx(264, abs=25) and boxes[1][0] == pytest.approx(374, abs=25)
        assert _ns(msg.header) in cam.stamps
        status = tester.wait(lambda: [s for s in _status(tester, node.fqn)
                                      if int(_values(s)["frames processed"]) > 0], 10, "diagnostics")[-1]
        # joints-only without a checkpoint is the out-of-the-box mode, not a fault
        assert status.level == DiagnosticStatus.OK, status.message
        assert "joints-only (no checkpoint configured)" in status.message
        assert "no checkpoint configured" in node.output()
    finally:
        rc = node.stop(signal.SIGTERM)
    assert rc == 0 and "Traceback" not in node.output(), node.output()[-3000:]


# ------------------------------------------------------------------------------------------------
# a missing and a corrupt checkpoint (run side by side), QoS and no-publisher warnings

def test_missing_and_corrupt_checkpoint_refuse_to_start(tester, node_tmp, tiny_checkpoint, mano_path):
    """As the CLI: a checkpoint that was asked for and cannot be used stops the node at configure,
    saying why and how to fix it (joints-only is for no checkpoint at all); no traceback."""
    corrupt_root = node_tmp / "corrupt" / "hamer_ckpts"
    (corrupt_root / "checkpoints").mkdir(parents=True)
    (corrupt_root / "model_config.yaml").write_bytes((tiny_checkpoint.parents[1] / "model_config.yaml").read_bytes())
    data = tiny_checkpoint.read_bytes()
    (corrupt_root / "checkpoints" / "hamer.ckpt").write_bytes(data[: len(data) // 3])
    missing = node_tmp / "nowhere" / "checkpoints" / "hamer.ckpt"
    common = dict(mano=str(mano_path), device="cpu", detector="fixed", rois=ROIS, image_timeout=1.0)
    nodes = {
        "missing": NodeProcess("missing", dict(common, checkpoint=str(missing)), node_tmp),
        "corrupt": NodeProcess("corrupt", dict(common, checkpoint=str(corrupt_root / "checkpoints" / "hamer.ckpt")),
                               node_tmp),
    }
    try:
        miss, corrupt = nodes["missing"], nodes["corrupt"]
        line = miss.wait_log(r"cannot start: HaMeR model NOT loaded", timeout=30)
        assert f"checkpoint file not found: looked for '{missing}'" in line
        assert "hamer_demo_data" in line and "leave checkpoint empty for the joints-only mode" in line
        line = corrupt.wait_log(r"cannot start: HaMeR model NOT loaded", timeout=30)
        assert "not a readable PyTorch checkpoint" in line
        for node in nodes.values():
            node.proc.wait(30)
    finally:
        rcs = {name: node.stop() for name, node in nodes.items()}
    for name, node in nodes.items():
        assert rcs[name] == 1 and "Traceback" not in node.output(), node.output()[-3000:]


def test_qos_mismatch_and_no_publisher_are_named(tester, node_tmp):
    node = NodeProcess("qos", dict(detector="fixed", rois=ROIS, image_timeout=1.0, qos_reliability="reliable"),
                       node_tmp)
    try:
        assert f"no publisher on {node.ns}/image" in node.wait_log(r"no publisher on", timeout=30)
        # a best-effort publisher cannot feed a reliable subscription: both settings named
        be = Camera(tester, node.ns, image_reliability=ReliabilityPolicy.BEST_EFFORT)
        line = node.wait_log(r"incompatible QoS", timeout=15)
        assert "reliability=best_effort" in line and "requests reliability=reliable" in line
        tester.node.destroy_publisher(be.image_pub)
    finally:
        assert node.stop() == 0


# ------------------------------------------------------------------------------------------------
# in-process: the worker's paths that need no second process (a stand-in pipeline)

class _StandInPipeline:
    has_mesh = False
    device = "cpu"
    backend = "none (joints-only)"
    engine = None
    model_error = ""
    tracker = None

    def __init__(self) -> None:
        from hamer_ros.perception.pipeline import PipelineConfig
        from hamer_ros.perception.types import StageTimes
        self.config = PipelineConfig(detector="fixed")
        self.last_times = StageTimes()
        self.fail = False
        self.calls = 0

    def __call__(self, image, K, dist=None, stamp=None):
        self.calls += 1
        if self.fail:
            raise RuntimeError("simulated inference failure")
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def inproc(tester):
    from hamer_ros.ros.node import HandMeshNode
    pipe = _StandInPipeline()
    node = HandMeshNode(pipeline=pipe, context=tester.context, namespace=f"/{RUN}/inproc",
                        parameter_overrides=[Parameter("detector", value="fixed"), Parameter("rois", value=ROIS),
                                             Parameter("camera_info_sync", value="exact"),
                                             Parameter("camera_info_wait", value=0.5)])
    node.start()
    yield node, pipe
    node.close()
    node.destroy_node()


def _image_for(stamp_ns: int) -> Image:
    msg = Image(width=W, height=H, encoding="rgb8", step=W * 3)
    msg.data = array.array("B", _test_pattern(1).tobytes())
    msg.header.stamp = _stamp(stamp_ns)
    msg.header.frame_id = FRAME
    return msg


def _info_for(stamp_ns: int) -> CameraInfo:
    msg = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    msg.header.stamp = _stamp(stamp_ns)
    msg.header.frame_id = FRAME
    msg.k = K.ravel()
    return msg


def test_exact_policy_waits_briefly_for_its_camera_info(inproc):
    node, pipe = inproc
    node._on_camera_info(_info_for(100))
    assert node._worker.process(_image_for(100), 0.0) is not None           # same stamp: paired at once
    # the CameraInfo arrives 50 ms after the image: the frame waits for it (camera_info_wait 0.5 s)
    threading.Timer(0.05, lambda: node._on_camera_info(_info_for(200))).start()
    t0 = time.monotonic()
    assert node._worker.process(_image_for(200), 0.0) is not None
    assert time.monotonic() - t0 < 0.45
    # never arrives: skipped after the wait, with the reason
    assert node._worker.process(_image_for(300), 0.0) is None
    assert "no CameraInfo" in node._stats.last_skip and "exact" in node._stats.last_skip
    assert pipe.calls == 2


def test_worker_survives_a_failing_pipeline_and_reports_in_diagnostics(inproc):
    from diagnostic_msgs.msg import DiagnosticStatus as Status
    node, pipe = inproc
    node._on_camera_info(_info_for(10))
    pipe.fail = True
    node._on_image(_image_for(10))
    deadline = time.monotonic() + 5
    while node._stats.totals().errors == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert node._stats.totals().errors == 1 and "simulated inference failure" in node._stats.last_skip
    pipe.fail = False
    node._on_camera_info(_info_for(20))
    node._on_image(_image_for(20))
    while node._stats.totals().processed == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert node._stats.totals().processed == 1 and node._thread.alive
    status = node.diagnostics().status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert values["frame errors"] == "1" and values["frames processed"] == "1"
    # the failed frame is reported for that period; joints-only (the stand-in) is a mode, not a fault
    assert status.level == Status.WARN and "1 frame(s) failed" in status.message, status.message
    assert "joints-only (no checkpoint configured)" in status.message
    again = node.diagnostics().status[0]
    assert again.level == Status.OK, again.message   # the next period: nothing new failed


class _SlowPipeline(_StandInPipeline):
    """A frame that takes as long as the test says, and a close() the test can see."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.entered, self.closed = threading.Event(), threading.Event(), threading.Event()

    def __call__(self, image, K, dist=None, stamp=None):
        self.entered.set()
        self.gate.wait(30)
        return []

    def close(self) -> None:
        self.closed.set()


def test_a_transition_never_waits_long_for_a_frame_in_progress(tester):
    """Deactivate and cleanup return within about a second while a frame is still running; what
    the frame uses is kept until it ends, then closed; a later configure/activate works."""
    from hamer_ros.ros.node import SUCCESS, HandMeshNode
    pipe = _SlowPipeline()
    node = HandMeshNode(pipeline=pipe, context=tester.context, namespace=f"/{RUN}/slow",
                        parameter_overrides=[Parameter("detector", value="fixed"), Parameter("rois", value=ROIS)])
    try:
        node.start()
        node._on_camera_info(_info_for(10))
        node._on_image(_image_for(10))
        assert pipe.entered.wait(10), "the frame never started"
        for transition in (node.trigger_deactivate, node.trigger_cleanup):
            t0 = time.monotonic()
            assert transition() == SUCCESS
            assert time.monotonic() - t0 < 2.0
        assert node._thread.stuck and not pipe.closed.is_set()     # nothing closed under the frame
        pipe.gate.set()
        assert pipe.closed.wait(10), "the pipeline was never closed after the frame ended"
        deadline = time.monotonic() + 5
        while node._thread.stuck and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not node._thread.stuck
        pipe.closed.clear()
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        assert node.trigger_deactivate() == SUCCESS and node.trigger_cleanup() == SUCCESS
        assert pipe.closed.is_set()     # nothing stuck this time: closed at once
    finally:
        pipe.gate.set()
        node.close()
        node.destroy_node()


def test_degraded_modes_show_in_diagnostics(inproc):
    """Each degraded mode has its level and says what it is (README: Diagnostics)."""
    from diagnostic_msgs.msg import DiagnosticStatus as Status
    node, pipe = inproc

    def status():
        st = node.diagnostics().status[0]
        return st.level, st.message, {kv.key: kv.value for kv in st.values}

    assert status()[0] == Status.OK
    # processing under half the input rate for 5 s: both rates in the message
    node._diagnostics._slow_since = time.monotonic() - 6.0
    for k in range(30):
        node._stats.received(k)
    for _ in range(3):
        node._stats.processed({"pipeline": 1.0, "convert": 0.0, "publish": 0.0, "wait": 0.0}, pipe.last_times, 1.0)
    node._last_image_mono = time.monotonic()
    node._last_diag_mono = time.monotonic() - 1.0
    level, message, _ = status()
    assert level == Status.WARN and "processing 3.0 Hz of 30.0 Hz input for" in message, message
    # hands with NaN left out: counted, and warned once per period they happen in
    pipe.nonfinite_dropped = 2
    level, message, values = status()
    assert level == Status.WARN and "2 hand(s) with NaN" in message and values["hands with NaN left out"] == "2"
    assert "NaN" not in status()[1]
    # a configured model that `auto` put on the CPU
    pipe.has_mesh = True
    node._values["device"] = "auto"
    level, message, _ = status()
    assert level == Status.WARN and "device 'auto' found no CUDA" in message
    node._values["device"] = "cpu"          # chosen: not a problem
    assert status()[0] == Status.OK
    # every frame of a period failed: nothing came out at all
    for _ in range(3):
        node._stats.failed(RuntimeError("boom"))
    node._last_image_mono = time.monotonic()
    level, message, _ = status()
    assert level == Status.ERROR and "3 frame(s) failed" in message, message


def test_a_hand_with_nan_reaches_no_output_over_dds(tester, tiny_model, monkeypatch):
    """A NaN injected into one frame's placement: that frame's HandArray leaves the hand out and
    TF carries no NaN; the next frame has the hand again, on the same track."""
    from hamer_ros.perception import FixedRoiDetector, HandPipeline, PipelineConfig
    from hamer_ros.ros.node import HandMeshNode
    from hamer_ros.settings import parse_rois
    rois = parse_rois(ROIS)
    pipe = HandPipeline(PipelineConfig(detector="fixed", rois=rois, device="cpu"), model=tiny_model,
                        detector=FixedRoiDetector(rois))
    ns = f"/{RUN}/nan"
    node = HandMeshNode(pipeline=pipe, context=tester.context, namespace=ns,
                        parameter_overrides=[Parameter("detector", value="fixed"), Parameter("rois", value=ROIS)])
    tester.subscribe(ns, markers=False, debug=False)
    try:
        node.start()
        from hamer_ros_testing import with_nan_joint
        original = pipe._mesh_hands
        poisoned = with_nan_joint(original, 4)
        node._on_camera_info(_info_for(10))
        stamps = [10**9 + k * 33_333_333 for k in range(3)]
        for k, stamp in enumerate(stamps):
            if k == 1:
                monkeypatch.setattr(pipe, "_mesh_hands", poisoned)
            node._worker.process(_image_for(stamp), 0.0)
            monkeypatch.setattr(pipe, "_mesh_hands", original)
        got = tester.wait(lambda: (lambda ms: ms if len(ms) == 3 else None)(    # wait() holds the lock
            [m for _, m in tester.inbox[f"{ns}/hands"] if _ns(m.header) in stamps]), 10, "three HandArrays")
        by_stamp = {_ns(m.header): m for m in got}
        counts = [len(by_stamp[s].hands) for s in stamps]
        assert counts == [2, 1, 2], counts
        for m in got:
            for h in m.hands:
                assert np.all(np.isfinite([(p.x, p.y, p.z) for p in h.joints]))
        first, last = by_stamp[stamps[0]], by_stamp[stamps[2]]
        assert [h.track_id for h in last.hands] == [h.track_id for h in first.hands]
        transforms = [t for _, m in tester.tf for t in m.transforms if t.child_frame_id.startswith(ns.strip("/"))]
        assert transforms and all(np.isfinite([t.transform.translation.x, t.transform.translation.y,
                                               t.transform.translation.z]).all() for t in transforms)
        assert pipe.nonfinite_dropped == 1
    finally:
        node.close()
        node.destroy_node()


def test_the_node_applies_the_large_image_profile_itself(node_tmp):
    """Started without a Fast DDS profile (ros2 run, the bare executable), the node uses the shipped
    one, as the launch file and env.sh do; a profile of the user's own is kept."""
    from hamer_ros.ros.dds_profile import PROFILE_ENV
    bare = NodeProcess("profile", dict(detector="fixed", rois=ROIS, image_timeout=30.0), node_tmp, unset=PROFILE_ENV)
    own = NodeProcess("ownprofile", dict(detector="fixed", rois=ROIS, image_timeout=30.0), node_tmp)
    try:
        line = bare.wait_log(r"Fast DDS profile for large images: ", timeout=30)
        assert line.rstrip().endswith(f"share/hamer_ros/config/fastdds_large_images.xml (set {PROFILE_ENV[0]} to use "
                                      "your own)"), line
        own.wait_log(r"\]: active", timeout=30)
        if any(os.environ.get(k) for k in PROFILE_ENV):       # the tests' environment has one (env.sh)
            assert "Fast DDS profile for large images" not in own.output()
    finally:
        assert bare.stop() == 0 and own.stop() == 0
