#!/usr/bin/env python3
"""How many best-effort rgb8 images reach another process, with and without the Fast DDS profile.

    python -m benchmarks dds_images --help

The measurement lives in hamer_ros_testing/dds_images.py (the tests use it too)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository: hamer_ros_testing

from hamer_ros_testing.dds_images import main  # noqa: E402

if __name__ == "__main__":
    main()
