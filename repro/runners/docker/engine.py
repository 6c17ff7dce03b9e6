"""One question to the Docker engine without docker-py: which image ID a name points at now.

``repro status`` of a pipeline checks each pinned image for drift. docker-py takes ~65 ms to
import and http.client ~25 ms (it loads ssl), while the question is one GET of
``/images/{name}/json`` over the engine's unix socket. So it is asked here in plain HTTP/1.0:
the engine closes the connection after answering, so the body is all that follows the headers,
never chunked. Engines reached over tcp:// or ssh:// (TLS, ssh tunnels) are asked through
docker-py instead.
"""

from __future__ import annotations

import os

from repro.errors import ReproError

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT_S = 60.0
# What may stand unescaped in the path: what docker-py leaves unquoted, plus unreserved bytes.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/:@")


def socket_path() -> str | None:
    """The engine's unix socket, or None when DOCKER_HOST names another transport."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return None


def unreachable(exc: BaseException) -> ReproError:
    """The one-line error for an engine that could not be asked, saying what to do."""
    where = os.environ.get("DOCKER_HOST", f"unix://{DEFAULT_SOCKET}")
    path = socket_path()
    if path is not None and _denied(exc, path):
        return ReproError(
            f"permission denied on {path}: add yourself to the docker group "
            "(sudo usermod -aG docker $USER, then log in again)"
        )
    return ReproError(
        f"no Docker engine answers at {where} ({type(exc).__name__}); start Docker "
        "(scripts/ensure-docker.sh does it as root) or point DOCKER_HOST at a running engine"
    )


def _denied(exc: BaseException, path: str) -> bool:
    """Whether the failure was the socket's permissions (docker-py wraps the PermissionError
    in two layers of requests' exceptions, so the socket is asked as well)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, PermissionError):
            return True
        nested = [a for a in getattr(seen, "args", ()) if isinstance(a, BaseException)]
        seen = seen.__cause__ or seen.__context__ or (nested[0] if nested else None)
    return os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK)


def image_id(name: str) -> str | None:
    """The ID ``name`` points at on this engine's unix socket; None when there is no such image.

    Raises ReproError when the engine cannot be asked or refuses.
    """
    path = socket_path()
    if path is None:
        raise ReproError(f"DOCKER_HOST={os.environ['DOCKER_HOST']} is not a unix socket")
    import _socket  # socket.py itself costs 3 ms of enum and selectors; this, 0.5 ms
    import json

    target = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name.encode("utf-8"))
    request = f"GET /images/{target}/json HTTP/1.0\r\nHost: docker\r\n\r\n".encode("ascii")
    try:
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            conn.settimeout(TIMEOUT_S)
            conn.connect(path)
            conn.sendall(request)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        finally:
            conn.close()
    except OSError as exc:
        raise unreachable(exc) from None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    code = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
    if code == 404:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if code == 200 and isinstance(answer, dict) and isinstance(answer.get("Id"), str):
        return str(answer["Id"])
    message = answer.get("message") if isinstance(answer, dict) else None
    shown = message or body[:200].decode("utf-8", "replace") or f"HTTP {code}"
    raise ReproError(f"the Docker engine refused to inspect image '{name}': {shown}")
