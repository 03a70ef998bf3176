"""hamer_ros: HaMeR hand meshes from a camera stream (ROS-free core + ROS 2 shell in ``ros/``)."""
# Run from a checkout (cwd on sys.path), this copy shadows the colcon install space, which alone
# holds the generated hamer_ros.msg: look for subpackages in every hamer_ros/ on sys.path.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"
