"""Humble (JetPack 6: Python 3.10, aarch64) as well as Jazzy, checked without either:
- the package, scripts, tests and launch file use no Python newer than 3.10 (vermin);
- hamer_ros uses only rclpy names that Humble's rclpy has, or goes through ros/compat.py's
  feature check (an AST scan against test/data/rclpy_humble_api.json, the inventory of the
  humble branch of ros2/rclpy written by scripts/rclpy_api_inventory.py);
- the dependencies resolve to binary wheels for linux-aarch64 / CPython 3.10.
The node itself runs with the newer rclpy names hidden in test/ros/test_node_humble.py."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from api_guard import Inventory, scan, scan_source

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = ROOT / "test" / "data" / "rclpy_humble_api.json"
COMPAT = ROOT / "hamer_ros" / "ros" / "compat.py"


def _package_sources() -> list[Path]:
    return sorted((ROOT / "hamer_ros").rglob("*.py")) + sorted((ROOT / "hamer_ros_testing").rglob("*.py")) \
        + sorted((ROOT / "launch").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py")) \
        + sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return Inventory.load(INVENTORY)


# ----- Python 3.10 --------------------------------------------------------------------------------

def _vermin(*paths: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    if exe is None:
        pytest.fail("vermin is not installed: `pip install -e .[test]` (scripts/bootstrap.sh does)")
    return subprocess.run([exe, "-t=3.10-", "--violations", "--eval-annotations", "--no-tips", "-q",
                           *map(str, paths)], capture_output=True, text=True)


def test_everything_runs_on_python_3_10():
    r = _vermin(ROOT / "hamer_ros", ROOT / "hamer_ros_testing", ROOT / "launch", ROOT / "scripts", ROOT / "benchmarks",
                ROOT / "test")
    assert r.returncode == 0, f"newer than Python 3.10:\n{r.stdout}{r.stderr}"


def test_vermin_catches_newer_python(tmp_path):
    (tmp_path / "new.py").write_text("import tomllib\nfrom typing import Self\n")
    r = _vermin(tmp_path)
    assert r.returncode != 0 and "tomllib" in r.stdout and "typing.Self" in r.stdout


# ----- Humble's rclpy -----------------------------------------------------------------------------

def _compat():
    """The compatibility module, where the names Humble lacks are written (it imports rclpy)."""
    return pytest.importorskip("hamer_ros.ros.compat", reason="rclpy not installed (the names Humble lacks live in "
                                                               "hamer_ros/ros/compat.py, which imports it)")


def test_inventory_is_humbles(inventory):
    assert inventory.source.startswith("ros2/rclpy humble ")
    assert inventory.resolve("rclpy.node.Node.create_subscription")
    assert inventory.resolve("rclpy.lifecycle.LifecycleNode.create_lifecycle_publisher")
    assert inventory.resolve("rclpy.qos_event.SubscriptionEventCallbacks")
    assert inventory.resolve("rclpy.qos.ReliabilityPolicy.BEST_EFFORT")
    # added in Iron: absent here, or the inventory is not Humble's
    for newer in _compat().NEWER_THAN_HUMBLE:
        assert inventory.resolve(newer) is None, newer


def test_package_uses_only_humbles_rclpy(inventory):
    found, used = scan(_package_sources(), inventory, COMPAT, ROOT)
    assert not found, "rclpy names Humble lacks (use them through hamer_ros/ros/compat.py):\n" + \
        "\n".join(map(str, found))
    # the scan really saw the node's rclpy use, not an empty set
    assert {"rclpy.lifecycle.LifecycleNode", "rclpy.qos.qos_policy_name_from_kind",
            "rclpy.lifecycle.node.LifecycleNode.create_subscription"} <= used


PLANTED = '''
import rclpy
from {events} import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

class Planted(LifecycleNode):
    def __init__(self):
        super().__init__("planted")
        self.add_on_set_parameters_callback(self.ok)
        self.{post_set}(self.ok)
        self.sub = self.create_subscription(int, "t", self.ok, 1)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.{best_available},
                         durability=DurabilityPolicy.VOLATILE)

    def ok(self, *a):
        self.sub.handle
        self.sub.not_a_subscription_method()
        super().not_a_lifecycle_method("x")

def f():
    node = rclpy.create_node("n")
    node.count_publishers("t")
    node.not_a_node_method("other")
    rclpy.logging.get_logger("x").warning("fine")
    rclpy.logging.get_logger("x").nonexistent_level("no")
'''


def _newer_reliability() -> str:
    """The full name of the QoS reliability member Humble lacks, as compat.py lists it."""
    return next(n for n in _compat().NEWER_THAN_HUMBLE if n.startswith("rclpy.qos.ReliabilityPolicy."))


def _planted(source: str) -> str:
    """A source that uses the names Humble lacks, as compat.py names them."""
    c = _compat()
    return source.format(events=c.EVENT_HANDLER_MODULE, post_set=c.POST_SET_CALLBACK,
                         best_available=_newer_reliability().rsplit(".", 1)[1])


def test_planted_newer_names_are_caught(inventory):
    c = _compat()
    found, _ = scan_source(_planted(PLANTED), inventory, "planted.py")
    names = sorted({v.name for v in found})
    assert names == sorted([
        c.EVENT_HANDLER_MODULE,
        f"rclpy.lifecycle.node.LifecycleNode.{c.POST_SET_CALLBACK}",
        _newer_reliability(),
        "rclpy.subscription.Subscription.not_a_subscription_method",
        "rclpy.lifecycle.node.LifecycleNode.not_a_lifecycle_method",
        "rclpy.node.Node.not_a_node_method",
        "rclpy.impl.rcutils_logger.RcutilsLogger.nonexistent_level",
    ]), names
    lines = {v.name: v.line for v in found}
    assert lines[c.EVENT_HANDLER_MODULE] == 3


def test_newer_names_pass_only_behind_the_compat_feature_check(inventory):
    c = _compat()
    guarded = _planted("try:\n    from {events} import SubscriptionEventCallbacks\n"
                       "except ImportError:\n    from rclpy.qos_event import SubscriptionEventCallbacks\n")
    assert scan_source(guarded, inventory, "compat.py", compat=True)[0] == []
    # the same guard anywhere else does not count
    assert [v.name for v in scan_source(guarded, inventory, "node.py")[0]] == [c.EVENT_HANDLER_MODULE]
    # nor does an unguarded use in the compat module
    bare = _planted("from rclpy.qos import ReliabilityPolicy\nx = ReliabilityPolicy.{best_available}\n")
    assert [v.name for v in scan_source(bare, inventory, "compat.py", compat=True)[0]] == [_newer_reliability()]


def test_inventory_script_reads_a_release_from_git(tmp_path):
    """scripts/rclpy_api_inventory.py on a small rclpy-shaped repository: modules, re-exports,
    class members, bases and annotated returns."""
    repo = tmp_path / "rclpy"
    pkg = repo / "rclpy" / "rclpy"
    (pkg / "lifecycle").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from rclpy.utilities import ok\n\ndef init(args=None):\n    pass\n")
    (pkg / "utilities.py").write_text("def ok():\n    return True\n")
    (pkg / "subscription.py").write_text("class Subscription:\n    def destroy(self):\n        pass\n")
    (pkg / "node.py").write_text(
        "from rclpy.subscription import Subscription\n\nclass Node:\n"
        "    def __init__(self):\n        self.handle = None\n"
        "    def create_subscription(self) -> Subscription:\n        pass\n")
    (pkg / "lifecycle" / "__init__.py").write_text("from .node import LifecycleNode\n")
    (pkg / "lifecycle" / "node.py").write_text(
        "from ..node import Node\n\nclass LifecycleNode(Node):\n    COLOUR = 1\n"
        "    def trigger_configure(self):\n        pass\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "humble", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    out = tmp_path / "inv.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "rclpy_api_inventory.py"), str(repo),
                        "--ref", "humble", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    inv = Inventory(json.loads(out.read_text()))
    assert inv.resolve("rclpy.ok") and inv.resolve("rclpy.init")
    assert inv.resolve("rclpy.lifecycle.LifecycleNode.create_subscription")   # inherited
    assert inv.resolve("rclpy.lifecycle.LifecycleNode.handle")                # self.x in a method
    assert inv.resolve("rclpy.lifecycle.LifecycleNode.COLOUR")
    assert inv.resolve("rclpy.lifecycle.LifecycleNode.spin") is None
    assert inv.returns("rclpy.lifecycle.node.LifecycleNode.create_subscription") == "rclpy.subscription.Subscription"


# ----- a Jetson's wheels --------------------------------------------------------------------------

def _check_jetson(*also: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "check_jetson_wheels.py"),
                           *(["--also", *also] if also else [])], capture_output=True, text=True, timeout=600)


def _skip_offline(r: subprocess.CompletedProcess) -> None:
    offline = any(s in r.stdout + r.stderr for s in ("Failed to establish a new connection",
                                                     "Temporary failure in name resolution"))
    if offline and not os.environ.get("CI"):
        pytest.skip("the package index is not reachable (the check resolves against it)")


def test_dependencies_resolve_for_jetson():
    r = _check_jetson()
    _skip_offline(r)
    assert r.returncode == 0, r.stdout + r.stderr
    picked = {line.split("==")[0].strip().lower() for line in r.stdout.splitlines() if "==" in line}
    for name in ("numpy", "scipy", "smplx", "opencv-python-headless", "pyyaml", "tqdm",
                 "onnxruntime", "pytest", "vermin"):
        assert name in picked, (name, r.stdout)
    assert "torch==2.3.0+jetpack6   (JetPack's own" in r.stdout   # never one from the index


def test_jetson_check_names_a_package_without_a_wheel():
    r = _check_jetson("mediapipe==0.10.21")
    _skip_offline(r)
    assert r.returncode == 1 and "no linux-aarch64 / CPython 3.10 wheel for mediapipe==0.10.21" in r.stdout, \
        r.stdout + r.stderr
