#!/usr/bin/env bash
# The test command (README): installs what the suite needs, brings up a Docker engine when none
# answers, runs pytest, and stops the engine again if it started one. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-tools.sh busybox sshd debootstrap git chromium netns

python3 -m pip install -q -e '.[test]' 2>&1 | grep -v -e '^WARNING: Running pip as' -e 'is ignored: it is neither' || true

engine=$(scripts/ensure-docker.sh)
if [[ $engine == started* ]]; then
    trap 'scripts/stop-docker.sh' EXIT
fi

python3 -m pytest "$@"
# Then the non-Docker suite again on a simulated portable host (README, "Other hosts"): no
# sched_getaffinity, copy_file_range, O_PATH, prctl, /proc, FICLONE or GNU find.
python3 -m pytest "$@" --portable-host -m "not docker"
