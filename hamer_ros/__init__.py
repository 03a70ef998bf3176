"""hamer_ros: HaMeR hand meshes from a camera stream (ROS-free core + ROS 2 shell in ``ros/``)."""
__version__ = "0.1.0"
