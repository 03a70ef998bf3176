"""hand_mesh_node for one camera, with hand_viz_node (visualize, default true) and optionally RViz.

    ros2 launch hamer_ros hands.launch.py image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info \
        checkpoint:=/data/hamer_ckpts/checkpoints/hamer.ckpt mano:=/data/mano/MANO_RIGHT.pkl rviz:=true

depth_topic:=/camera/aligned_depth_to_color/image_raw (a depth image aligned to the colour image)
remaps the node's `depth` input to it and turns use_depth on; empty (the default) leaves both as
the params file has them.

hand_mesh_node publishes what a robot needs (hands, /tf, /diagnostics); hand_viz_node, in its own
process, draws from those: hands/markers and hands/debug_image (+ /compressed). visualize:=false
leaves it out (a robot with no one watching).

Every node parameter lives in params_file (default: the installed config/hands.yaml);
checkpoint, mano and device given here override it, and only when not empty, so a params file
of your own keeps its values unless you pass these. autostart:=false leaves the node
unconfigured for a lifecycle manager.

Optional pieces are looked up before anything starts: without an installed rviz2, rviz:=true
logs why and starts the nodes alone. Without a Fast DDS profile of your own, the nodes and RViz get
config/fastdds_large_images.xml, so large best-effort images arrive (the camera driver needs
it too; see that file).
"""
import os

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# One table of the arguments and what they do, shared with `scripts/run.sh node`.
from hamer_ros.ros.launch_args import LAUNCH_ARGUMENTS, VIZ_INPUTS, node_settings

# Read by the node: its hints then name these launch arguments (image_topic:=...), not --ros-args.
STARTED_BY_ENV = "HAMER_ROS_ARGS"
PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


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
    given = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}
    settings = node_settings(given, os.path.join(share, "config", "hands.yaml"))
    profile = _profile_env(context, share)

    actions = []
    rviz = None
    if settings.rviz:
        try:
            get_package_prefix("rviz2")
        except PackageNotFoundError:
            actions.append(LogInfo(msg="rviz:=true, but RViz 2 is not installed (package rviz2 not found; install "
                                       "ros-$ROS_DISTRO-rviz2): starting the nodes without RViz"))
        else:
            rviz = Node(package="rviz2", executable="rviz2", name="rviz2", namespace=settings.namespace,
                        arguments=["-d", os.path.join(share, "rviz", "hands.rviz")],
                        additional_env=profile, output="screen")
    actions.append(Node(
        package="hamer_ros",
        executable="hand_mesh_node",
        name="hand_mesh_node",
        namespace=settings.namespace,
        parameters=[settings.params_file, settings.overrides],
        remappings=settings.remappings,
        additional_env={STARTED_BY_ENV: "launch", **profile},
        output="screen",
        emulate_tty=True,
    ))
    if settings.visualize:
        actions.append(Node(
            package="hamer_ros",
            executable="hand_viz_node",
            name="hand_viz_node",
            namespace=settings.namespace,
            parameters=[settings.params_file],
            remappings=[(name, topic) for name, topic in settings.remappings if name in VIZ_INPUTS],
            additional_env=profile,
            output="screen",
            emulate_tty=True,
        ))
    if rviz is not None:
        actions.append(rviz)
    return actions


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in LAUNCH_ARGUMENTS),
        OpaqueFunction(function=_launch_setup),
    ])
