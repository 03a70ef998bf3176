#!/usr/bin/env bash
# The main job, set up from nothing (idempotent):
#   bash scripts/run.sh                  offline pipeline on the example photos → out/ (see hamer_ros/examples.py)
#   bash scripts/run.sh infer PATH... --out DIR [--checkpoint … --intrinsics fx,fy,cx,cy]
#   bash scripts/run.sh node [name:=value...]  the ROS 2 node, with the launch file's arguments
#                                        (ros2 launch when a system ROS has it, else the executable)
# HAMER_CHECKPOINT / HAMER_MANO, when set, give the weights to both.
set -euo pipefail
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/prepare.sh"
weights=()
[[ -n "${HAMER_CHECKPOINT:-}" ]] && weights+=(--checkpoint "$HAMER_CHECKPOINT")
[[ -n "${HAMER_MANO:-}" ]] && weights+=(--mano "$HAMER_MANO")

case "${1:-demo}" in
  node)
    # One syntax on both paths: the launch file's arguments (image_topic:=..., checkpoint:=...).
    shift
    ros_weights=()
    [[ -n "${HAMER_CHECKPOINT:-}" ]] && ros_weights+=("checkpoint:=$HAMER_CHECKPOINT")
    [[ -n "${HAMER_MANO:-}" ]] && ros_weights+=("mano:=$HAMER_MANO")
    if command -v ros2 >/dev/null && python -c "import launch_ros" 2>/dev/null; then
      exec ros2 launch hamer_ros hands.launch.py "${ros_weights[@]}" "$@"
    fi
    # PyPI ROS has no launch/ros2cli: the same arguments, turned into --ros-args for the executable by
    # the table the launch file reads too (hamer_ros/ros/launch_args.py).
    args_file=$(mktemp)
    if ! python -m hamer_ros.ros.launch_args "$root/config/hands.yaml" "${ros_weights[@]}" "$@" > "$args_file"; then
      rm -f "$args_file"
      exit 2
    fi
    mapfile -d '' ros_args < "$args_file"
    rm -f "$args_file"
    # The node's hints then name these arguments; env.sh has already set the Fast DDS profile.
    export HAMER_ROS_ARGS=launch
    exec "$root/install/hamer_ros/lib/hamer_ros/hand_mesh_node" --ros-args "${ros_args[@]}"
    ;;
  infer)
    shift
    exec hamer-ros infer "${weights[@]}" "$@"
    ;;
  demo)
    # $HAMER_ROS_EXAMPLES, ../shared/data/hamer_examples, the user cache; else a checked download
    # into the cache. Offline it prints one line saying what to do, and the exit status is 1.
    examples=$(python -m hamer_ros.examples) || exit 1
    exec hamer-ros infer "$examples" --out "$root/out" "${weights[@]}"
    ;;
  *)
    echo "usage: bash scripts/run.sh [demo | infer ARGS... | node [image_topic:=... checkpoint:=... ...]]" >&2
    exit 2
    ;;
esac
