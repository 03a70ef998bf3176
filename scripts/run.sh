#!/usr/bin/env bash
# The main job, set up from nothing (idempotent):
#   bash scripts/run.sh                  offline pipeline on the example photos → out/ (see hamer_ros/examples.py)
#   bash scripts/run.sh infer PATH... --out DIR [--checkpoint … --intrinsics fx,fy,cx,cy]
#   bash scripts/run.sh node [name:=value...]  the ROS 2 nodes, with the launch file's arguments
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
    # PyPI ROS has no launch/ros2cli: the same arguments, turned into --ros-args for the executables by
    # the table the launch file reads too (hamer_ros/ros/launch_args.py).
    ros_args_for() {   # ros_args_for [--viz] NAME...: the node's --ros-args into the array NAME
      local -n into=$1
      local file
      file=$(mktemp)
      if ! python -m hamer_ros.ros.launch_args "${@:2}" > "$file"; then
        rm -f "$file"
        exit 2
      fi
      mapfile -d '' into < "$file"
      rm -f "$file"
    }
    ros_args_for mesh_args "$root/config/hands.yaml" "${ros_weights[@]}" "$@"
    ros_args_for viz_args --viz "$root/config/hands.yaml" "${ros_weights[@]}" "$@"
    # The node's hints then name these arguments; env.sh has already set the Fast DDS profile.
    export HAMER_ROS_ARGS=launch
    lib="$root/install/hamer_ros/lib/hamer_ros"
    # Both in the background, so Ctrl-C (or SIGTERM) reaches this script, which stops both cleanly.
    pids=()
    trap 'kill -TERM "${pids[@]}" 2>/dev/null' INT TERM
    "$lib/hand_mesh_node" --ros-args "${mesh_args[@]}" &
    pids+=($!)
    if ((${#viz_args[@]})); then
      "$lib/hand_viz_node" --ros-args "${viz_args[@]}" &
      pids+=($!)
    fi
    # The perception node's exit status is this script's; the viewer ends with it.
    while :; do
      wait "${pids[0]}" && rc=0 || rc=$?
      kill -0 "${pids[0]}" 2>/dev/null || break
    done
    kill -TERM "${pids[@]:1}" 2>/dev/null || true
    wait || true
    exit "$rc"
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
