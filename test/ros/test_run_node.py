"""`bash scripts/run.sh node` without a system ROS: the launch file's arguments (name:=value),
turned into --ros-args for the installed executable; the node's hints then name those arguments."""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ros

if importlib.util.find_spec("rclpy") is None:
    pytest.skip("ROS 2 not importable; run `bash scripts/build_ros.sh && source scripts/env.sh` first",
                allow_module_level=True)


def _env() -> dict[str, str]:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1",
               RCUTILS_COLORIZED_OUTPUT="0", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    env.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    env.pop("ROS_LOCALHOST_ONLY", None)
    return env


def _run_node(tmp_path: Path, *args: str) -> subprocess.Popen:
    log = open(tmp_path / "run.log", "wb")
    return subprocess.Popen(["bash", str(ROOT / "scripts" / "run.sh"), "node", *args], stdout=log,
                            stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path)


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 240.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = path.read_text(errors="replace")
        if text in out:
            return out
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no '{text}' within {timeout} s (exit {proc.poll()}):\n{path.read_text()[-3000:]}")


def test_run_sh_node_takes_launch_arguments(tmp_path):
    if shutil.which("ros2") and importlib.util.find_spec("launch_ros"):
        pytest.skip("with a system ROS, run.sh node is `ros2 launch` itself")
    ns = f"t{os.getpid()}/runsh"
    params = yaml.safe_load((ROOT / "config" / "hands.yaml").read_text())
    params["/**/hand_mesh_node"]["ros__parameters"].update(image_timeout=1.0, detector="fixed",
                                                           rois="[{box: [10, 10, 90, 90], side: right}]")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _run_node(tmp_path, f"namespace:={ns}", f"image_topic:=/{ns}/camera/image", "rviz:=true",
                     f"params_file:={tmp_path / 'params.yaml'}")
    try:
        out = _wait_for(tmp_path / "run.log", "no publisher on", proc)
        line = next(s for s in out.splitlines() if "no publisher on" in s)
        # the remap applied, in the namespace; the hint names run.sh's argument, not --ros-args
        assert f"no publisher on /{ns}/camera/image" in line and "set image_topic:=" in line, line
        assert "rviz:=true needs a system ROS 2" in out
        assert f"[{ns.replace('/', '.')}.hand_mesh_node]: active" in out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
    assert rc == 0 and "Traceback" not in (tmp_path / "run.log").read_text()
