"""hand_mesh_node for one camera, optionally with RViz.

    ros2 launch hamer_ros hands.launch.py image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info \
        checkpoint:=/data/hamer_ckpts/checkpoints/hamer.ckpt mano:=/data/mano/MANO_RIGHT.pkl rviz:=true

depth_topic:=/camera/aligned_depth_to_color/image_raw (a depth image aligned to the colour image)
remaps the node's `depth` input to it and turns use_depth on; empty (the default) leaves both as
the params file has them.

Every node parameter lives in params_file (default: the installed config/hands.yaml);
checkpoint, mano and device given here override it, and only when not empty, so a params file
of your own keeps its values unless you pass these. autostart:=false leaves the node
unconfigured for a lifecycle manager.

Optional pieces are looked up before anything starts: without an installed rviz2, rviz:=true
logs why and starts the node alone. Without a Fast DDS profile of your own, the node and RViz get
config/fastdds_large_images.xml, so large best-effort images arrive (the camera driver needs
it too; see that file).
"""
import os

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# Launch arguments passed on as node parameters of the same name (when not empty; autostart too).
PARAMETER_ARGUMENTS = ("checkpoint", "mano", "device")
# Read by the node: its hints then name these launch arguments (image_topic:=...), not --ros-args.
STARTED_BY_ENV = "HAMER_ROS_ARGS"
PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def _flag(context, name: str) -> bool:
    value = LaunchConfiguration(name).perform(context).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got '{value}'")
    return value == "true"


def _profile_env(context, share: str) -> dict:
    """The shipped Fast DDS profile, unless the user has one or uses another middleware."""
    env = getattr(context, "environment", os.environ)
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return {}
    if any(env.get(k) for k in PROFILE_ENV):
        return {}
    profile = os.path.join(share, "config", "fastdds_large_images.xml")
    return {k: profile for k in PROFILE_ENV}


def _launch_setup(context, *args, **kwargs):
    share = get_package_share_directory("hamer_ros")
    overrides = {name: LaunchConfiguration(name).perform(context) for name in PARAMETER_ARGUMENTS}
    overrides = {k: v for k, v in overrides.items() if v}
    if LaunchConfiguration("autostart").perform(context):
        overrides["autostart"] = _flag(context, "autostart")
    profile = _profile_env(context, share)
    namespace = LaunchConfiguration("namespace")
    remappings = [("image", LaunchConfiguration("image_topic")),
                  ("camera_info", LaunchConfiguration("camera_info_topic"))]
    depth_topic = LaunchConfiguration("depth_topic").perform(context).strip()
    if depth_topic:
        # naming a depth topic means wanting it used: one argument instead of two to keep in step
        remappings.append(("depth", depth_topic))
        overrides["use_depth"] = True

    actions = []
    rviz = None
    if _flag(context, "rviz"):
        try:
            get_package_prefix("rviz2")
        except PackageNotFoundError:
            actions.append(LogInfo(msg="rviz:=true, but RViz 2 is not installed (package rviz2 not found; install "
                                       "ros-$ROS_DISTRO-rviz2): starting hand_mesh_node without RViz"))
        else:
            rviz = Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
                        arguments=["-d", os.path.join(share, "rviz", "hands.rviz")],
                        additional_env=profile, output="screen")
    actions.append(Node(
        package="hamer_ros",
        executable="hand_mesh_node",
        name="hand_mesh_node",
        namespace=namespace,
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=remappings,
        additional_env={STARTED_BY_ENV: "launch", **profile},
        output="screen",
        emulate_tty=True,
    ))
    if rviz is not None:
        actions.append(rviz)
    return actions


def generate_launch_description():
    share = get_package_share_directory("hamer_ros")
    return LaunchDescription([
        DeclareLaunchArgument("image_topic", default_value="/camera/color/image_raw",
                              description="sensor_msgs/Image input (rgb8, bgr8, rgba8, bgra8 or mono8)"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/color/camera_info",
                              description="sensor_msgs/CameraInfo of that image"),
        DeclareLaunchArgument("depth_topic", default_value="",
                              description="optional sensor_msgs/Image depth aligned to the colour image (16UC1 mm "
                                          "or 32FC1 m, e.g. /camera/aligned_depth_to_color/image_raw): remapped "
                                          "to depth, and use_depth set true. Empty: RGB only (as in params_file)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node (and of RViz): hands, hands/markers, ...; "
                                          "also the prefix of its TF frames unless tf_prefix is set"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "hands.yaml"),
                              description="node parameters (YAML; key /**/hand_mesh_node matches any namespace)"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="HaMeR checkpoint .../hamer_ckpts/checkpoints/hamer.ckpt "
                                          "(empty: as in params_file)"),
        DeclareLaunchArgument("mano", default_value="",
                              description="MANO_RIGHT.pkl or its folder (empty: as in params_file)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:N (empty: as in params_file)"),
        DeclareLaunchArgument("autostart", default_value="",
                              description="true: configure and activate at once; false: stay unconfigured "
                                          "for a lifecycle manager (empty: as in params_file, default true)"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="also start RViz with rviz/hands.rviz (when rviz2 is installed)"),
        OpaqueFunction(function=_launch_setup),
    ])
