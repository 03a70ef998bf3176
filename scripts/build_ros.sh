#!/usr/bin/env bash
# colcon build --symlink-install of the ROS packages in ros2/ (hamer_ros_msgs, hamer_ros) into <repo>/build and
# <repo>/install (plus the test-only tf2_msgs stand-in when nothing else provides tf2_msgs). Two environments:
#   - a sourced system ROS 2 (ROS_DISTRO set): its colcon and the system python3;
#   - otherwise the PyPI wheels in <repo>/.venv (made by scripts/bootstrap.sh).
# Idempotent and quiet; on failure prints the tail of the colcon log. Extra arguments go to
# `colcon build` (e.g. --packages-select hamer_ros).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"

if [[ -n "${ROS_DISTRO:-}" ]]; then
  # The system's rclpy and type support are built for the system interpreter, not the venv's.
  py=/usr/bin/python3
  [[ -x "$py" ]] || py=$(command -v python3)
  colcon=(colcon)
else
  if [[ ! -x "$venv/bin/colcon" ]]; then
    echo "build_ros.sh: no system ROS 2 sourced and no $venv/bin/colcon; run scripts/bootstrap.sh" >&2
    exit 1
  fi
  py="$venv/bin/python"
  colcon=("$venv/bin/colcon")
  # The wheels' CMake configs and ament index live in the venv prefix.
  case ":${AMENT_PREFIX_PATH:-}:" in *":$venv:"*) ;; *) export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$venv:"*) ;; *) export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
  export PATH="$venv/bin:$PATH"
fi

# Decide on the stand-in while ignoring our own install space: once built, it would otherwise
# make `import tf2_msgs` succeed and drop itself from later builds.
other_pythonpath=
IFS=: read -r -a entries <<< "${PYTHONPATH:-}"
for e in "${entries[@]}"; do
  [[ -z "$e" || "$e" == "$root/install"* ]] || other_pythonpath+="${other_pythonpath:+:}$e"
done
paths=("$root/ros2")     # hamer_ros_msgs and hamer_ros
if ! PYTHONPATH="$other_pythonpath" "$py" -c "import tf2_msgs.msg" >/dev/null 2>&1; then
  paths+=("$root/test/ros_interfaces/tf2_msgs")
else
  # A stand-in left from an earlier PyPI build would overlay the real tf2_msgs.
  rm -rf "$root/build/tf2_msgs" "$root/install/tf2_msgs"
fi

# --symlink-install: the installed Python files are links to this tree, so edited code runs without
# a rebuild (a new file still needs one). A build made by copying cannot be switched in place
# (colcon cannot replace its copied folders with links), so one without our marker starts afresh.
marker="$root/build/.symlink-install"
if [[ -d "$root/build" && ! -f "$marker" ]]; then
  rm -rf "${root:?}/build" "${root:?}/install"
fi

# A build tree of a package whose sources moved (the repository root was the hamer_ros package
# before ros2/ existed) makes CMake stop: start that package afresh.
for pkg in hamer_ros hamer_ros_msgs; do
  cache="$root/build/$pkg/CMakeCache.txt"
  if [[ -f "$cache" ]] && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$root/ros2/$pkg" "$cache"; then
    rm -rf "${root:?}/build/$pkg" "${root:?}/install/$pkg"
  fi
done

out="$root/log/build_ros.out"
mkdir -p "$root/log"
# --base-paths: ros2/ (its two packages) and the stand-in, so the crawl never walks .venv or the tree.
if ! "${colcon[@]}" --log-base "$root/log" build \
    --base-paths "${paths[@]}" \
    --build-base "$root/build" --install-base "$root/install" --symlink-install \
    --event-handlers console_direct- console_cohesion+ console_start_end- status- summary- \
      terminal_title- desktop_notification- \
    "$@" \
    --cmake-args "-DPython3_EXECUTABLE=$py" -DBUILD_TESTING=OFF >"$out" 2>&1; then
  echo "build_ros.sh: colcon build failed; last lines of $out:" >&2
  tail -n 60 "$out" >&2
  exit 1
fi
touch "$marker"
