"""The launch arguments' one table (hamer_ros/ros/launch_args.py), read by launch/hands.launch.py
and by `scripts/run.sh node`: what each argument does to the node, and the --ros-args it becomes."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hamer_ros.ros.launch_args import NAMES, node_settings, parse, ros_arguments


def test_defaults_are_the_launch_files():
    s = node_settings({}, "/share/config/hands.yaml")
    assert s.params_file == "/share/config/hands.yaml" and s.namespace == "" and not s.rviz and s.visualize
    assert s.remappings == [("image", "/camera/color/image_raw"), ("camera_info", "/camera/color/camera_info")]
    assert s.overrides == {}


def test_each_argument_does_what_the_launch_file_says():
    s = node_settings(parse(["image_topic:=/cam/rgb", "camera_info_topic:=/cam/info", "depth_topic:=/cam/depth",
                             "namespace:=robot1", "params_file:=/my.yaml", "checkpoint:=/w/hamer.ckpt",
                             "mano:=", "device:=cuda", "autostart:=false", "rviz:=true"]), "/default.yaml")
    assert s.params_file == "/my.yaml" and s.namespace == "robot1" and s.rviz
    assert s.remappings == [("image", "/cam/rgb"), ("camera_info", "/cam/info"), ("depth", "/cam/depth")]
    # empty ones (mano) leave the params file's value; a depth topic turns use_depth on
    assert s.overrides == {"checkpoint": "/w/hamer.ckpt", "device": "cuda", "autostart": False, "use_depth": True}
    assert ros_arguments(s) == ["--params-file", "/my.yaml", "-r", "image:=/cam/rgb", "-r", "camera_info:=/cam/info",
                                "-r", "depth:=/cam/depth", "-r", "__ns:=/robot1", "-p", "checkpoint:=/w/hamer.ckpt",
                                "-p", "device:=cuda", "-p", "autostart:=false", "-p", "use_depth:=true"]
    # hand_viz_node: the same params file, namespace, image and CameraInfo; none of the rest
    assert ros_arguments(s, viz=True) == ["--params-file", "/my.yaml", "-r", "image:=/cam/rgb", "-r",
                                          "camera_info:=/cam/info", "-r", "__ns:=/robot1"]


@pytest.mark.parametrize("argv, message", [
    (["imagetopic:=/x"], "unknown argument(s) imagetopic"),
    (["image_topic=/x"], "arguments are name:=value"),
    (["rviz:=yes"], "rviz must be true or false"),
    (["autostart:=1"], "autostart must be true or false"),
    (["visualize:=no"], "visualize must be true or false"),
])
def test_mistakes_are_named(argv, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        node_settings(parse(argv), "/d.yaml")


def test_the_command_line_run_sh_uses():
    run = [sys.executable, "-m", "hamer_ros.ros.launch_args", "/d.yaml"]
    out = subprocess.run(run + ["namespace:=a/b", "rviz:=true"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.split("\0")[:-1] == ["--params-file", "/d.yaml", "-r", "image:=/camera/color/image_raw", "-r",
                                           "camera_info:=/camera/color/camera_info", "-r", "__ns:=/a/b"]
    assert "rviz:=true needs a system ROS 2" in out.stderr
    viz = subprocess.run(run[:-1] + ["--viz", "/d.yaml", "image_topic:=/cam"], capture_output=True, text=True)
    assert viz.returncode == 0 and viz.stdout.split("\0")[:-1] == [
        "--params-file", "/d.yaml", "-r", "image:=/cam", "-r", "camera_info:=/camera/color/camera_info"]
    off = subprocess.run(run[:-1] + ["--viz", "/d.yaml", "visualize:=false"], capture_output=True, text=True)
    assert off.returncode == 0 and off.stdout == ""       # run.sh then starts hand_mesh_node alone
    bad = subprocess.run(run + ["detector:=fixed"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == f"run.sh node: unknown argument(s) detector (known: {', '.join(NAMES)})"
