#!/usr/bin/env bash
# The test command: builds the environment from nothing if needed (idempotent), colcon-builds the
# package (real rosidl generation of msg/), and runs every test, the ROS ones on real rclpy + DDS.
# Extra arguments go to pytest (e.g. `-k camera`, `-m "not slow"`).
set -euo pipefail
export HAMER_ROS_EXTRAS=test,onnx,bag,ray
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/prepare.sh"
# DDS stays on this machine, and parallel runs do not see each other.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Humble predates the range setting; Jazzy deprecates this one (and lets it override the range).
[[ "${ROS_DISTRO:-}" == humble ]] && export ROS_LOCALHOST_ONLY=1
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( $$ % 100 + 1 ))}
exec python -m pytest -ra "$@"
