# Sourced by run.sh and test.sh: build the environment from nothing if needed (idempotent),
# colcon-build the package, and set this shell up for it.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
bash scripts/build_ros.sh
set +u
# shellcheck source=/dev/null
source scripts/env.sh
set -u
