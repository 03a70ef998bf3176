"""hand_mesh_node as a managed node, driven through its real lifecycle services over DDS (the
INSTALLED executable in a subprocess): outputs only while active, ~/enable, cleanup and a second
configure, shutdown ending the process; autostart; per-namespace TF frame names.
"""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

try:
    from diagnostic_msgs.msg import DiagnosticStatus
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from std_srvs.srv import SetBool

    from test_node import (FRAME, ROIS, Camera, NodeProcess, RosSide, _ns, _serve_good_frame, _status, mesh_params,  # noqa: F401
                           tester)
except ImportError as exc:  # a ROS-free checkout: only the core's tests apply
    pytest.skip(f"ROS 2 not importable ({exc}); run `bash scripts/build_ros.sh && source scripts/env.sh` first",
                allow_module_level=True)

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lifecycle")


def _state(tester: RosSide, node: NodeProcess) -> str:
    return tester.call(GetState, f"{node.fqn}/get_state", GetState.Request()).current_state.label


def _transition(tester: RosSide, node: NodeProcess, transition: int, timeout: float = 60.0) -> bool:
    req = ChangeState.Request(transition=Transition(id=transition))
    return tester.call(ChangeState, f"{node.fqn}/change_state", req, timeout=timeout, idempotent=False).success


def _no_output_for(tester: RosSide, camera: Camera, node: NodeProcess, seconds: float = 1.5) -> None:
    """Sends frames for `seconds`; none of them may come back."""
    topic = f"{node.ns}/hands"
    sent = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sent.add(camera.image())
        time.sleep(0.1)
    time.sleep(0.5)
    back = [m for m in tester.received(topic) if _ns(m.header) in sent]
    assert not back, f"{len(back)} HandArray(s) published while the node should be silent"


def test_lifecycle_through_the_services(tester, node_tmp, tiny_checkpoint, mano_path):
    node = NodeProcess("robot1", mesh_params(tiny_checkpoint, mano_path, autostart=False), node_tmp)
    try:
        tester.subscribe(node.ns, markers=False, debug=False)
        camera = Camera(tester, node.ns)
        camera.info()
        hands_topic = f"{node.ns}/hands"
        node.wait_log(r"autostart is false: unconfigured", timeout=60)
        assert _state(tester, node) == "unconfigured"
        assert tester.node.count_publishers(hands_topic) == 0        # nothing exists before configure
        assert "HaMeR model loaded" not in node.output()             # nor is the model loaded
        _no_output_for(tester, camera, node)

        # configure: loads the model; publishers exist but stay silent while inactive
        assert _transition(tester, node, Transition.TRANSITION_CONFIGURE)
        assert _state(tester, node) == "inactive"
        assert "HaMeR model loaded" in node.output()
        tester.wait(lambda: tester.node.count_publishers(hands_topic) > 0, 5, "the hands publisher")
        _no_output_for(tester, camera, node)
        status = tester.wait(lambda: _status(tester, node.fqn), 5, "diagnostics while inactive")[-1]
        assert status.level == DiagnosticStatus.OK and "inactive" in status.message, status.message

        # activate: frames are served
        assert _transition(tester, node, Transition.TRANSITION_ACTIVATE)
        assert _state(tester, node) == "active"
        msg = _serve_good_frame(tester, camera, node)
        assert len(msg.hands) == 2 and all(h.has_mesh for h in msg.hands)

        # ~/enable false pauses without a transition; true resumes
        reply = tester.call(SetBool, f"{node.fqn}/enable", SetBool.Request(data=False))
        assert reply.success and "paused" in reply.message
        _no_output_for(tester, camera, node)
        assert _state(tester, node) == "active"
        status = tester.wait(lambda: [s for s in _status(tester, node.fqn) if "paused" in s.message], 5,
                             "diagnostics while paused")[-1]
        assert status.level == DiagnosticStatus.OK, status.message
        assert tester.call(SetBool, f"{node.fqn}/enable", SetBool.Request(data=True)).success
        _serve_good_frame(tester, camera, node)

        # deactivate: silent again, model kept; activate again without reloading
        loads = node.output().count("HaMeR model loaded")
        assert _transition(tester, node, Transition.TRANSITION_DEACTIVATE)
        assert _state(tester, node) == "inactive"
        _no_output_for(tester, camera, node)
        assert _transition(tester, node, Transition.TRANSITION_ACTIVATE)
        _serve_good_frame(tester, camera, node)
        assert node.output().count("HaMeR model loaded") == loads

        # cleanup releases the model and the publishers; configure loads it again
        assert _transition(tester, node, Transition.TRANSITION_DEACTIVATE)
        assert _transition(tester, node, Transition.TRANSITION_CLEANUP)
        assert _state(tester, node) == "unconfigured"
        node.wait_log(r"unconfigured \(model released\)", timeout=5)
        tester.wait(lambda: tester.node.count_publishers(hands_topic) == 0, 5, "the hands publisher to go")
        assert _transition(tester, node, Transition.TRANSITION_CONFIGURE)
        assert _transition(tester, node, Transition.TRANSITION_ACTIVATE)
        assert node.output().count("HaMeR model loaded") == loads + 1
        _serve_good_frame(tester, camera, node)
        node.assert_alive()

        # shutdown (from active) ends the process cleanly
        assert _transition(tester, node, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        node.proc.wait(20)
    finally:
        rc = node.stop(signal.SIGINT)
    out = node.output()
    assert rc == 0 and "Traceback" not in out, out[-3000:]
    assert "shut down (finalized)" in out


def test_a_failed_configure_leaves_the_node_unconfigured(tester, node_tmp, mano_path):
    # device cuda on a machine without CUDA: configure fails with the reason, a manager may retry
    import torch
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    node = NodeProcess("failing", dict(device="cuda", detector="fixed", rois=ROIS, autostart=False), node_tmp)
    try:
        node.wait_log(r"autostart is false", timeout=60)
        assert not _transition(tester, node, Transition.TRANSITION_CONFIGURE)
        assert _state(tester, node) == "unconfigured"
        line = node.wait_log(r"configure failed", timeout=5)
        assert "CUDA is not available" in line and "use device cpu" in line
        node.assert_alive()
    finally:
        rc = node.stop(signal.SIGTERM)
    assert rc == 0 and "Traceback" not in node.output()


def test_autostart_and_namespaced_frame_names(tester, node_tmp, tiny_checkpoint, mano_path):
    """Two nodes in two namespaces with the default tf_prefix publish distinct frames."""
    nodes = [NodeProcess(name, mesh_params(tiny_checkpoint, mano_path), node_tmp) for name in ("cellA", "cellB")]
    try:
        for node in nodes:
            tester.subscribe(node.ns, markers=False, debug=False)
        for node in nodes:
            node.wait_log(r"\]: active\b", timeout=60)
            assert _state(tester, node) == "active"        # autostart (the default)
            camera = Camera(tester, node.ns)
            camera.info()
            stamp = _ns(_serve_good_frame(tester, camera, node).header)
            children = tester.wait(lambda: sorted(t.child_frame_id for _, m in tester.tf for t in m.transforms
                                                  if _ns(t.header) == stamp and t.header.frame_id == FRAME), 5, "TF")
            prefix = node.ns.strip("/") + "/"          # e.g. t1234/cellA/
            assert children == [f"{prefix}left_hand/wrist", f"{prefix}right_hand/wrist"], children
    finally:
        rcs = [n.stop() for n in nodes]
    assert rcs == [0, 0]
