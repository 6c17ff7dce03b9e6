#!/usr/bin/env bash
# The test command (README): installs what the suite needs, brings up a Docker engine when none
# answers, runs pytest, and stops the engine again if it started one. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v git >/dev/null 2>&1 || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "error: the tests need ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "installing ${missing[*]} from Debian..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
fi

python3 -m pip install -q -e '.[test]' 2>&1 | grep -v -e '^WARNING: Running pip as' -e 'is ignored: it is neither' || true

engine=$(scripts/ensure-docker.sh)
if [[ $engine == started* ]]; then
    trap 'scripts/stop-docker.sh' EXIT
fi

python3 -m pytest "$@"
