"""md5, the one hash repro uses: of a file's bytes, of bytes in memory, and of a copy as it is
made. Everything that names an object by its content goes through here.

hashlib (OpenSSL's md5, the fastest on large files) is imported on first use, not with this
module: the quick status hashes a few touched files with CPython's own md5 instead
(:func:`quick_file_md5`), which loads in a twentieth of the time.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from repro.fsutil import write_all

CHUNK = 1 << 20

_buffers = threading.local()


def _read_buffer() -> tuple[bytearray, memoryview]:
    """This thread's read buffer, allocated once.

    ``os.read(fd, CHUNK)`` would allocate (mmap) a fresh CHUNK-sized object per call and unmap
    it again: three syscalls per file, and in a threaded process every unmap interrupts the
    other cores to flush their TLBs. On 20,000 small files that costs more than the hashing.
    """
    found: tuple[bytearray, memoryview] | None = getattr(_buffers, "buffer", None)
    if found is None:
        data = bytearray(CHUNK)
        found = _buffers.buffer = (data, memoryview(data))
    return found


def file_md5(path: str) -> str:
    """md5 hex digest of a file's raw bytes (what md5sum prints)."""
    return _md5_of(os.open(path, os.O_RDONLY))


def file_md5_links(path: str) -> str:
    """:func:`file_md5`, with ``+`` appended when the file has other hardlinks (fstat of the
    open file: the commit that follows must copy such a file into the cache, not link it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        shared = os.fstat(fd).st_nlink > 1
    except BaseException:
        os.close(fd)
        raise
    return _md5_of(fd) + ("+" if shared else "")


def quick_file_md5(path: str) -> str:
    """:func:`file_md5` through CPython's own md5 (the same digest): for a command that hashes
    a few small files and would spend more time loading OpenSSL than hashing."""
    try:
        from _md5 import md5
    except ImportError:  # a Python built without it
        from hashlib import md5
    return _md5_of(os.open(path, os.O_RDONLY), md5())


def _openssl_md5(data: bytes = b"") -> Any:
    import hashlib

    return hashlib.md5(data)


def _md5_of(fd: int, digest: Any = None) -> str:
    """md5 of what ``fd`` reads from its start; closes it."""
    buffer, view = _read_buffer()
    if digest is None:
        digest = _openssl_md5()
    try:
        # A regular file reads short only at its end: no extra read to see EOF.
        while (count := os.readv(fd, [buffer])) == CHUNK:
            digest.update(view)
        digest.update(view[:count])
    finally:
        os.close(fd)
    return str(digest.hexdigest())


def copy_md5(src: int, dst: int) -> str:
    """Copy all of ``src`` (from where it stands) into ``dst``; return the bytes' md5.

    One pass through user space: for a small file, cheaper than a kernel copy followed by
    reading it back (a large one is the other way round; see the folder remote).
    """
    buffer, view = _read_buffer()
    digest = _openssl_md5()
    while count := os.readv(src, [buffer]):
        chunk = view[:count]
        digest.update(chunk)
        write_all(dst, chunk)
    return str(digest.hexdigest())


def bytes_md5(data: bytes) -> str:
    return str(_openssl_md5(data).hexdigest())
