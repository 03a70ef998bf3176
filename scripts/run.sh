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
    # PyPI ROS has no launch/ros2cli: the same arguments, turned into --ros-args for the executable.
    params_file="$root/config/hands.yaml"
    ros_args=()
    for arg in "${ros_weights[@]}" "$@"; do
      name=${arg%%:=*}
      value=${arg#*:=}
      if [[ "$arg" != *":="* ]]; then
        echo "run.sh node: arguments are name:=value (as for ros2 launch), got '$arg'" >&2
        exit 2
      fi
      case "$name" in
        image_topic) ros_args+=(-r "image:=$value") ;;
        camera_info_topic) ros_args+=(-r "camera_info:=$value") ;;
        # as the launch file: a depth topic is remapped and turns use_depth on; empty changes nothing
        depth_topic) if [[ -n "$value" ]]; then ros_args+=(-r "depth:=$value" -p use_depth:=true); fi ;;
        namespace) if [[ -n "$value" ]]; then ros_args+=(-r "__ns:=/${value#/}"); fi ;;
        params_file) params_file=$value ;;
        checkpoint|mano|device|autostart) if [[ -n "$value" ]]; then ros_args+=(-p "$name:=$value"); fi ;;
        rviz) if [[ "$value" == true ]]; then
                echo "run.sh node: rviz:=true needs a system ROS 2 (ros2 launch, rviz2); starting the node alone" >&2
              fi ;;
        *) echo "run.sh node: unknown argument '$name' (image_topic, camera_info_topic, depth_topic, namespace, params_file, checkpoint, mano, device, autostart, rviz)" >&2
           exit 2 ;;
      esac
    done
    # The node's hints then name these arguments; env.sh has already set the Fast DDS profile.
    export HAMER_ROS_ARGS=launch
    exec "$root/install/hamer_ros/lib/hamer_ros/hand_mesh_node" --ros-args --params-file "$params_file" "${ros_args[@]}"
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
