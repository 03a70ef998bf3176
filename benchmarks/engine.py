#!/usr/bin/env python3
"""Model latency per backend and precision against the device's floor: `hamer-ros bench`.

    python -m benchmarks engine [--backends eager,compile] [--precisions fp32,fp16] [--device cuda]

The same command users run on their GPU (`hamer-ros bench --help`); listed here so that every
benchmark has one runner."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamer_ros.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
