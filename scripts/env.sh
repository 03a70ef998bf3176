# Source me (bash): `source scripts/env.sh`. Sets up this shell for running hamer_ros:
#   - activates <repo>/.venv;
#   - without a sourced system ROS 2, points AMENT_PREFIX_PATH/CMAKE_PREFIX_PATH at the venv,
#     where the PyPI ROS 2 wheels keep their ament index and CMake configs;
#   - sources <repo>/install/setup.bash when scripts/build_ros.sh has built it;
#   - keeps DDS discovery on this machine and picks Fast DDS, unless the caller chose otherwise;
#   - points Fast DDS at config/fastdds_large_images.xml (large best-effort images between
#     processes), unless the caller has a profile of their own.
# Never exits the calling shell: a failed step prints a warning, and makes the `source` return
# non-zero only when the caller has no `set -e` (where that would end the shell).

_hamer_ros_env() {
  local root venv had_e=0 had_u=0 status=0
  # colcon's setup.bash reads unset variables and may return non-zero; under the caller's
  # `set -eu` that would abort, or end the shell. ($(set +o) cannot save -e: bash clears it there.)
  if [[ $- == *e* ]]; then had_e=1; fi
  if [[ $- == *u* ]]; then had_u=1; fi
  set +eu
  root=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd) || status=1
  venv="$root/.venv"

  if [[ -f "$venv/bin/activate" && "${VIRTUAL_ENV:-}" != "$venv" ]]; then
    # shellcheck disable=SC1091
    source "$venv/bin/activate" || status=1
  fi

  if [[ -z "${ROS_DISTRO:-}" && -d "$venv/share/ament_index" ]]; then
    case ":${AMENT_PREFIX_PATH:-}:" in *":$venv:"*) ;; *) export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
    case ":${CMAKE_PREFIX_PATH:-}:" in *":$venv:"*) ;; *) export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
  fi

  if [[ -f "$root/install/setup.bash" ]]; then
    # shellcheck disable=SC1091
    source "$root/install/setup.bash" || status=1
  fi

  # Fast DDS otherwise announces itself by UDP multicast on the machine's network. Humble predates
  # the range setting and has ROS_LOCALHOST_ONLY instead (deprecated from Jazzy on).
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  if [[ "${ROS_DISTRO:-}" == humble ]]; then export ROS_LOCALHOST_ONLY="${ROS_LOCALHOST_ONLY:-1}"; fi
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
  # Fast DDS loses large best-effort images between processes with its default 512 KB shared
  # memory segment; the shipped profile enlarges it (see the file). A profile of your own wins.
  if [[ "$RMW_IMPLEMENTATION" == rmw_fastrtps_cpp && -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}" \
        && -z "${FASTDDS_DEFAULT_PROFILES_FILE:-}" ]]; then
    export FASTRTPS_DEFAULT_PROFILES_FILE="$root/config/fastdds_large_images.xml"   # Fast DDS 2.x
    export FASTDDS_DEFAULT_PROFILES_FILE="$FASTRTPS_DEFAULT_PROFILES_FILE"          # Fast DDS 3.x
  fi

  if [[ $status -ne 0 ]]; then
    echo "env.sh: setting up the hamer_ros environment failed (see above)" >&2
  fi
  if [[ $had_u -eq 1 ]]; then set -u; fi
  if [[ $had_e -eq 1 ]]; then
    set -e
    return 0
  fi
  return "$status"
}
_hamer_ros_env
eval "unset -f _hamer_ros_env; return $?"
