#!/usr/bin/env python3
"""Benchmark: how many best-effort rgb8 images reach another process, with and without the Fast DDS profile.

    python scripts/bench_dds_images.py --help

The measurement lives in hamer_ros_testing/dds_images.py (the tests use it too)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository: hamer_ros_testing

from hamer_ros_testing.dds_images import main  # noqa: E402

if __name__ == "__main__":
    main()
