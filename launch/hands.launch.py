"""hand_mesh_node for one camera, optionally with RViz.

    ros2 launch hamer_ros hands.launch.py image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info \
        checkpoint:=/data/hamer_ckpts/checkpoints/hamer.ckpt mano:=/data/mano/MANO_RIGHT.pkl rviz:=true

Every node parameter lives in params_file (default: the installed config/hands.yaml);
checkpoint, mano and device given here override it, and only when not empty, so a params file
of your own keeps its values unless you pass these.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# Launch arguments passed on as node parameters of the same name (when not empty).
PARAMETER_ARGUMENTS = ("checkpoint", "mano", "device")


def _hand_mesh_node(context, *args, **kwargs):
    overrides = {}
    for name in PARAMETER_ARGUMENTS:
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    return [Node(
        package="hamer_ros",
        executable="hand_mesh_node",
        name="hand_mesh_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", LaunchConfiguration("image_topic")),
                    ("camera_info", LaunchConfiguration("camera_info_topic"))],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    share = get_package_share_directory("hamer_ros")
    return LaunchDescription([
        DeclareLaunchArgument("image_topic", default_value="/camera/color/image_raw",
                              description="sensor_msgs/Image input (rgb8, bgr8, rgba8, bgra8 or mono8)"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/color/camera_info",
                              description="sensor_msgs/CameraInfo of that image"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node (and of RViz): hands, hands/markers, ..."),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "hands.yaml"),
                              description="node parameters (YAML; key /**/hand_mesh_node matches any namespace)"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="HaMeR checkpoint .../hamer_ckpts/checkpoints/hamer.ckpt "
                                          "(empty: as in params_file)"),
        DeclareLaunchArgument("mano", default_value="",
                              description="MANO_RIGHT.pkl or its folder (empty: as in params_file)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:N (empty: as in params_file)"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz with rviz/hands.rviz"),
        OpaqueFunction(function=_hand_mesh_node),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            namespace=LaunchConfiguration("namespace"),
            arguments=["-d", os.path.join(share, "rviz", "hands.rviz")],
            condition=IfCondition(LaunchConfiguration("rviz")),
            output="screen",
        ),
    ])
