"""The shipped Fast DDS profile for large images (config/fastdds_large_images.xml): where it is
installed, and applying it to this process when the user has none. No rclpy here."""
from __future__ import annotations

import os
from pathlib import Path

# Fast DDS reads its XML profile from these (FASTRTPS_: Fast DDS 2.x, Humble/Jazzy; FASTDDS_: 3.x).
PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
PROFILE_FILE = "fastdds_large_images.xml"   # in config/ (installed to share/hamer_ros/config)


def _installed_profile() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory
        path = Path(get_package_share_directory("hamer_ros"), "config", PROFILE_FILE)
    except Exception:  # noqa: BLE001 -- not installed with colcon
        return None
    return path if path.is_file() else None


def profile_path() -> str:
    path = _installed_profile()
    return str(path) if path is not None else f"<hamer_ros share>/config/{PROFILE_FILE}"


def use_shipped_profile() -> str | None:
    """Points Fast DDS at the shipped large-image profile unless the user has a profile of their
    own or another middleware, so `ros2 run`, the executable and the launch file behave alike.
    Must run before ROS initialises (Fast DDS reads it when the participant is made). Returns the
    path it set, or None."""
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return None
    if any(os.environ.get(k) for k in PROFILE_ENV):
        return None
    path = _installed_profile()
    if path is None:
        return None
    for k in PROFILE_ENV:
        os.environ[k] = str(path)
    return str(path)
