"""The shipped Fast DDS profile (config/fastdds_large_images.xml) lets 720p and 1080p rgb8
best-effort images through between two processes (real rclpy, real Fast DDS, this machine).
The numbers with and without it: benchmarks/dds_images.py (hamer_ros_testing/dds_images.py)."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "config" / "fastdds_large_images.xml"

try:
    import rclpy  # noqa: F401
    from sensor_msgs.msg import Image  # noqa: F401
except ImportError as exc:
    pytest.skip(f"ROS 2 not importable ({exc}); run `bash scripts/build_ros.sh && source scripts/env.sh` first",
                allow_module_level=True)

pytestmark = pytest.mark.ros


def test_profile_is_the_default_participant_profile():
    ns = {"p": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ET.parse(PROFILE).getroot()
    participant = root.find("p:participant", ns)
    assert participant.get("is_default_profile") == "true"
    shm = next(d for d in root.iter(f"{{{ns['p']}}}transport_descriptor") if d.find("p:type", ns).text == "SHM")
    assert int(shm.find("p:segment_size", ns).text) >= 3 * 1920 * 1080 * 3   # a few 1080p frames in flight
    used = {t.text for t in participant.iter(f"{{{ns['p']}}}transport_id")}
    assert shm.find("p:transport_id", ns).text in used


@pytest.mark.parametrize("width,height", [(1280, 720), (1920, 1080)])
def test_large_best_effort_frames_arrive_with_the_profile(width, height):
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        pytest.skip("the profile is for Fast DDS (RMW_IMPLEMENTATION=rmw_fastrtps_cpp)")
    frames = 30
    from hamer_ros_testing.dds_images import delivered
    got = delivered(width, height, frames=frames, rate=15.0, profile=PROFILE)
    print(f"{width}x{height} rgb8 best effort with the profile: {got}/{frames}")
    assert got >= frames - 2, f"only {got}/{frames} frames arrived with the profile"
