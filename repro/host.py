"""Facts about the host that differ between platforms, each found one way, here.

repro runs on Linux (native, in WSL2, in a container) and on macOS, with GNU or BusyBox tools.
Each Linux-only call has a portable path, chosen once at import from what the host has, so
callers ask this module instead of trying calls that fail elsewhere (``os.sendfile`` into a
file, ``O_PATH``, ``/proc``). The Linux path stays what it was. Only os and sys are imported at
the top: the quick status imports this module.
"""

from __future__ import annotations

import os
import sys

LINUX = sys.platform == "linux"
MACOS = sys.platform == "darwin"

# A copy inside the kernel, where the host has one: copy_file_range (Linux 4.5), then
# sendfile, which takes a file as its destination on Linux only (macOS wants a socket).
COPY_FILE_RANGE = getattr(os, "copy_file_range", None)
SENDFILE_TO_FILE = LINUX

# A handle on a path that opens nothing (a fifo does not block, a device is not touched):
# O_PATH on Linux. Elsewhere a non-blocking read-only open: a fifo still does not block, but
# a device planted in a remote's folder is opened before fstat refuses it.
O_PATH = getattr(os, "O_PATH", None)
HANDLE_FLAGS = O_PATH if O_PATH is not None else os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY

_FICLONE = 0x40049409  # linux/fs.h: make dst share src's extents
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def cores() -> int:
    """Cores this process may run on (its affinity where the host tells it, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def platform() -> str:
    """What this host is, as a person would name it: Linux, WSL2, macOS, or sys.platform."""
    if MACOS:
        return "macOS"
    if not LINUX:
        return sys.platform
    try:
        with open("/proc/version", encoding="utf-8") as handle:
            version = handle.read().lower()
    except OSError:
        return "Linux"
    return "WSL2" if "microsoft" in version else "Linux"


def aes_in_hardware() -> bool:
    """Whether the CPU says it has AES instructions (x86's AES-NI, ARM's crypto extension):
    then AES-GCM outruns ChaCha20 several times. Where it cannot say (no /proc), Apple's arm64
    has them, and anything else is taken not to."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                name, _, flags = line.partition(":")
                if name.strip() in ("flags", "Features"):
                    return "aes" in flags.split()
    except OSError:
        pass
    return MACOS and os.uname().machine == "arm64"


def die_with_parent(lifeline: int) -> None:
    """Have this forked worker die as soon as its parent does: Linux's PR_SET_PDEATHSIG;
    elsewhere a thread that kills it when ``lifeline``, the read end of a pipe whose write
    end only the parent holds, reaches its end."""
    import signal

    if LINUX:
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            os.close(lifeline)
            return
        except (OSError, AttributeError):  # a C library without prctl: the thread, then
            pass
    import threading

    def watch() -> None:
        while os.read(lifeline, 1):
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def container_ids() -> list[str]:
    """IDs of containers whose storage this process's mounts show (/proc/self/mountinfo on
    Linux); empty where the host has no such table, and callers go by the hostname."""
    import re

    if not LINUX:
        return []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            return re.findall(r"/containers/([0-9a-f]{64})/", handle.read())
    except OSError:
        return []


def clone(src: int, dst: int) -> bool:
    """Make the file open as ``dst`` share the blocks of ``src`` (copy-on-write); False where
    the host or the filesystem cannot (the caller copies instead), OSError on a real failure.

    Linux: the FICLONE ioctl (btrfs, xfs, bcachefs). macOS: clonefile(2) on APFS makes a new
    file only, so the clone is made beside ``dst``'s path and renamed over it; ``dst`` stays
    open on the empty file it replaced, which callers only close.
    """
    import errno

    from repro.fsutil import NO_KERNEL_COPY

    try:
        if LINUX:
            import fcntl

            fcntl.ioctl(dst, _FICLONE, src)
            return True
        if MACOS:
            return _clone_on_macos(src, dst)
    except OSError as exc:
        if exc.errno in NO_KERNEL_COPY or exc.errno == errno.ENOTTY:
            return False
        raise
    return False


_F_SETPIPE_SZ = 1031  # linux/fcntl.h (F_LINUX_SPECIFIC_BASE + 7)
WIDE_PIPE = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


def widen_pipe(fd: int) -> None:
    """Let the pipe ``fd`` hold a megabyte instead of 64 KiB, where the host can (Linux): a
    process streaming into a pipe then runs ahead while its reader is busy elsewhere, instead
    of the two taking turns. Elsewhere, or past the limit an unprivileged user may set, the
    pipe stays as it is."""
    if LINUX:
        import fcntl
        from contextlib import suppress

        with suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, WIDE_PIPE)


_F_GETPATH = 50  # sys/fcntl.h on macOS: the path an open file was found by


def _clone_on_macos(src: int, dst: int) -> bool:
    import ctypes
    import fcntl

    dest = fcntl.fcntl(dst, _F_GETPATH, bytes(1024)).rstrip(b"\0")
    beside = dest + b".clone"
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -2  # sys/fcntl.h on macOS
    if libc.fclonefileat(src, at_fdcwd, beside, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), os.fsdecode(dest))
    try:
        os.rename(beside, dest)
    except BaseException:
        os.unlink(beside)
        raise
    return True
