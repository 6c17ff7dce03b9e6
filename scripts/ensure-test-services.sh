#!/usr/bin/env bash
# Make sure what the remote tests start themselves is installed: OpenSSH's sshd (the tests run a
# private one on 127.0.0.1) and moto's S3 server (Python). Idempotent; prints what it did.
set -euo pipefail

if [ ! -x /usr/sbin/sshd ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "error: /usr/sbin/sshd is missing; install openssh-server (or run this as root)" >&2
        exit 1
    fi
    echo "installing openssh-server from Debian..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # The package's postinst may try to start the system sshd; the tests do not need it.
    apt-get install -y -q --no-install-recommends openssh-server openssh-client >/dev/null
fi
echo "sshd: $(/usr/sbin/sshd -V 2>&1 | head -1)"

python=${PYTHON:-python3}
if ! "$python" -c 'import moto.server, flask, paramiko, boto3' 2>/dev/null; then
    echo "installing the remote test dependencies..." >&2
    "$python" -m pip install -q 'moto[server]>=5' 'paramiko>=3' 'boto3>=1.26'
fi
echo "python: paramiko, boto3 and moto[server] importable"
