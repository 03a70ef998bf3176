"""ROS 2 shell of hamer_ros: the only subpackage that imports rclpy or message types.

Everything here converts between ROS messages and the ROS-free core in ``hamer_ros.perception``;
it holds no geometry of its own. Importing this package does not import rclpy, so the core's
tests can collect it without a ROS environment.
"""
