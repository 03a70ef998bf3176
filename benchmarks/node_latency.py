#!/usr/bin/env python3
"""HandArray and marker latency of the installed node, with and without a debug-image viewer.

    python -m benchmarks node_latency --help

The measurement lives in hamer_ros_testing/node_latency.py (the tests use it too)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository: hamer_ros_testing

from hamer_ros_testing.node_latency import main  # noqa: E402

if __name__ == "__main__":
    main()
