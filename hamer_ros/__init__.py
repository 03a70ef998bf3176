"""hamer_ros: HaMeR hand meshes from a camera stream (ROS-free core + ROS 2 shell in ``ros/``).
The messages are the separate package hamer_ros_msgs."""

__version__ = "0.1.0"
