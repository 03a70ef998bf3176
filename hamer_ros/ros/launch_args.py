"""The arguments of launch/hands.launch.py and what each does to the node: one table, read by the
launch file and by `scripts/run.sh node`, which without a system ROS (no launch, no ros2cli)
turns the same name:=value arguments into --ros-args for the installed executable:

    python -m hamer_ros.ros.launch_args [--viz] DEFAULT_PARAMS_FILE name:=value ...

prints those --ros-args (with --viz: hand_viz_node's, none when visualize:=false) NUL-separated,
or one line saying what is wrong (exit 2). Imports neither rclpy nor launch.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("image_topic", "/camera/color/image_raw",
                   "sensor_msgs/Image input (rgb8, bgr8, rgba8, bgra8 or mono8)"),
    LaunchArgument("camera_info_topic", "/camera/color/camera_info", "sensor_msgs/CameraInfo of that image"),
    LaunchArgument("depth_topic", "",
                   "optional sensor_msgs/Image depth aligned to the colour image (16UC1 mm or 32FC1 m, e.g. "
                   "/camera/aligned_depth_to_color/image_raw): remapped to depth, and use_depth set true. "
                   "Empty: RGB only (as in params_file)"),
    LaunchArgument("namespace", "", "namespace of the node (and of RViz): hands, hands/markers, ...; also the "
                                    "prefix of its TF frames unless tf_prefix is set"),
    LaunchArgument("params_file", "", "node parameters (YAML; key /**/hand_mesh_node matches any namespace). "
                                      "Empty: the installed config/hands.yaml"),
    LaunchArgument("checkpoint", "", "HaMeR checkpoint .../hamer_ckpts/checkpoints/hamer.ckpt (empty: as in "
                                     "params_file)"),
    LaunchArgument("mano", "", "MANO_RIGHT.pkl or its folder (empty: as in params_file)"),
    LaunchArgument("device", "", "auto | cpu | cuda | cuda:N (empty: as in params_file)"),
    LaunchArgument("autostart", "", "true: configure and activate at once; false: stay unconfigured for a "
                                    "lifecycle manager (empty: as in params_file, default true)"),
    LaunchArgument("visualize", "true", "also start hand_viz_node (its own process): hands/markers and "
                                        "hands/debug_image (+ /compressed) for RViz or a remote viewer"),
    LaunchArgument("rviz", "false", "also start RViz with rviz/hands.rviz (when rviz2 is installed; its "
                                    "meshes and image come from visualize)"),
)
NAMES = tuple(a.name for a in LAUNCH_ARGUMENTS)
# passed on as node parameters of the same name, when not empty
PARAMETER_ARGUMENTS = ("checkpoint", "mano", "device")
# the inputs hand_viz_node shares with hand_mesh_node (it reads hands from the latter)
VIZ_INPUTS = ("image", "camera_info")


@dataclass
class NodeSettings:
    """How the node is started, from the launch arguments."""

    params_file: str
    namespace: str
    remappings: list[tuple[str, str]]
    overrides: dict[str, Any] = field(default_factory=dict)   # parameters over the params file
    visualize: bool = True
    rviz: bool = False


def _flag(name: str, value: str) -> bool:
    value = value.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got '{value}'")
    return value == "true"


def node_settings(given: dict[str, str], default_params_file: str) -> NodeSettings:
    """The node's settings for these arguments (missing ones take their defaults); ValueError
    naming an unknown argument or a bad value."""
    unknown = sorted(set(given) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown argument(s) {', '.join(unknown)} (known: {', '.join(NAMES)})")
    v = {a.name: a.default for a in LAUNCH_ARGUMENTS} | {k: str(x) for k, x in given.items()}
    overrides: dict[str, Any] = {k: v[k] for k in PARAMETER_ARGUMENTS if v[k]}
    if v["autostart"].strip():
        overrides["autostart"] = _flag("autostart", v["autostart"])
    remappings = [("image", v["image_topic"]), ("camera_info", v["camera_info_topic"])]
    depth = v["depth_topic"].strip()
    if depth:
        # naming a depth topic means wanting it used: one argument instead of two to keep in step
        remappings.append(("depth", depth))
        overrides["use_depth"] = True
    return NodeSettings(params_file=v["params_file"] or default_params_file, namespace=v["namespace"].strip(),
                        remappings=remappings, overrides=overrides, visualize=_flag("visualize", v["visualize"]),
                        rviz=_flag("rviz", v["rviz"]))


def ros_arguments(s: NodeSettings, viz: bool = False) -> list[str]:
    """The same settings as the executable's --ros-args (after `--ros-args`): hand_mesh_node's, or
    with `viz` hand_viz_node's (the params file, the namespace and the image and CameraInfo topics)."""
    args = ["--params-file", s.params_file]
    for name, topic in s.remappings:
        if not viz or name in VIZ_INPUTS:
            args += ["-r", f"{name}:={topic}"]
    if s.namespace:
        args += ["-r", f"__ns:=/{s.namespace.lstrip('/')}"]
    for name, value in ({} if viz else s.overrides).items():
        args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    return args


def parse(argv: list[str]) -> dict[str, str]:
    """name:=value arguments as a dict; ValueError for anything else."""
    out = {}
    for arg in argv:
        if ":=" not in arg:
            raise ValueError(f"arguments are name:=value (as for ros2 launch), got '{arg}'")
        name, value = arg.split(":=", 1)
        out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    viz = bool(argv) and argv[0] == "--viz"
    argv = argv[1:] if viz else argv
    if not argv:
        print("usage: python -m hamer_ros.ros.launch_args [--viz] DEFAULT_PARAMS_FILE [name:=value ...]",
              file=sys.stderr)
        return 2
    try:
        settings = node_settings(parse(argv[1:]), argv[0])
    except ValueError as e:
        print(f"run.sh node: {e}", file=sys.stderr)
        return 2
    if viz:
        # hand_viz_node's arguments; nothing when visualize:=false
        if settings.visualize:
            sys.stdout.write("\0".join(ros_arguments(settings, viz=True)) + "\0")
        return 0
    if settings.rviz:
        print("run.sh node: rviz:=true needs a system ROS 2 (ros2 launch, rviz2); starting the nodes without it",
              file=sys.stderr)
    sys.stdout.write("\0".join(ros_arguments(settings)) + "\0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
