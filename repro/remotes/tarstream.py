"""Many objects in one byte stream, as the tar format lays them out.

A transfer of thousands of small objects over ssh is bound by round trips, one or more per
object; one ``tar`` stream moves them all in one. The other side runs the system's ``tar``
(GNU, BusyBox or bsdtar), so the format is tar; only what those write for plain files is read.

The reader trusts nothing in the stream: it never makes a path from a member's name (the caller
looks the name up among the keys it asked for), hands out at most the size a header states, and
stops at the first malformed header.
"""

from __future__ import annotations

import os
import sys
import tarfile
from collections.abc import Callable, Iterator
from typing import IO, NamedTuple

BLOCK = 512
_EMPTY = bytes(BLOCK)
# What a header's type flag says of a plain file (``\0`` is the pre-POSIX spelling).
_REGULAR = (b"0", b"\0", b"7")
# Links, devices, folders and FIFOs: whatever their header's size says, no data follows.
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")
_LONG_NAME = b"L"  # GNU: this member's data is the next member's name
_PAX = (b"x", b"g")  # POSIX extended headers: the next member's (x) or every member's (g)
# A long name or an extended header bigger than this is no header a tar of ours would write.
_MAX_META = 1 << 16
_CHUNK = 1 << 20
# A pax size longer than this is beyond any file (2**64 has 20 digits).
_MAX_DIGITS = 20
# Smaller files go through the pipe's buffer with their headers; bigger ones by sendfile.
_SMALL = 64 << 10


class TarFormatError(Exception):
    """The stream is not a tar archive, or breaks off inside one."""


class Member(NamedTuple):
    name: str
    size: int
    regular: bool


def _number(field: bytes) -> int:
    """A header number: octal text, or GNU's base-256 for sizes beyond 8 GiB."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise TarFormatError(f"bad number {field!r} in a tar header") from None


def _decimal(text: str) -> int:
    # isdigit alone takes "²", which int() refuses, as it refuses more than 4,300 digits.
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
        raise TarFormatError(f"bad size {text!r} in a pax header")
    return int(text)


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


class Reader:
    """Members of a tar stream read from ``stream``, one at a time: after ``next()`` gives a
    member, ``data()`` yields its bytes (or ``next()`` skips them). Archives one after the
    other read as one (``xargs tar -c`` writes one per batch of names)."""

    def __init__(self, stream: IO[bytes], progress: Callable[[int], None] | None = None) -> None:
        self._stream = stream
        self._progress = progress
        self._left = 0  # data bytes of the current member not yet read
        self._padding = 0

    def _some(self, size: int) -> bytes:
        """Up to ``size`` bytes, those that have come: ``progress`` hears of each piece, so
        a slow but steady link (a megabyte taking longer than the timeout) never looks silent."""
        data: bytes = self._stream.read1(size)  # type: ignore[attr-defined]
        if not data:
            raise TarFormatError("the tar stream ended inside a member")
        if self._progress is not None:
            self._progress(len(data))
        return data

    def _read(self, size: int) -> bytes:
        data = self._some(size) if size else b""
        while len(data) < size:
            data += self._some(size - len(data))
        return data

    def _skip_rest(self) -> None:
        for _chunk in self.data():
            pass

    def _meta(self, size: int) -> bytes:
        if size > _MAX_META:
            raise TarFormatError(f"a tar meta-entry of {size} bytes")
        data = self._read(size)
        self._read(-size % BLOCK)
        return data

    def next(self) -> Member | None:
        """The next member, or None at the end of the archive."""
        self._skip_rest()
        name: str | None = None
        size: int | None = None
        while True:
            header = self._stream.read(BLOCK)
            if not header:
                return None  # the end (a stream cut between members: the caller's to see)
            if len(header) != BLOCK:
                raise TarFormatError("the tar stream ended inside a header")
            if self._progress is not None:
                self._progress(BLOCK)
            if header == _EMPTY:
                # An archive's end, or its padding: several archives may follow each other.
                continue
            stored = _number(header[148:156])
            if stored != sum(header[:148]) + 256 + sum(header[156:]):
                raise TarFormatError("a tar header's checksum is wrong")
            kind = header[156:157]
            length = _number(header[124:136])
            if kind == _LONG_NAME:
                name = _text(self._meta(length))
                continue
            if kind in _PAX:
                records = _pax_records(self._meta(length))
                if kind == b"x":
                    name = records.get("path", name)
                    if "size" in records:
                        size = _decimal(records["size"])
                continue
            if name is None:
                name = _text(header[0:100])
                if header[257:263] == b"ustar\0" and header[345]:  # POSIX: a name prefix
                    name = f"{_text(header[345:500])}/{name}"
            regular = kind in _REGULAR
            if regular:
                self._left = size if size is not None else length
            elif kind in _NO_DATA:
                self._left = 0
            else:
                self._left = length  # a folder's listing, GNU's sparse map: skipped alike
            self._padding = -self._left % BLOCK
            return Member(name, self._left, regular)

    def data(self) -> Iterator[bytes]:
        """The current member's bytes, in chunks."""
        while self._left:
            chunk = self._some(min(self._left, _CHUNK))
            self._left -= len(chunk)
            yield chunk
        if self._padding:
            self._read(self._padding)
            self._padding = 0


def _pax_records(data: bytes) -> dict[str, str]:
    """``"%d key=value\\n"`` records, each prefixed by its own length."""
    records: dict[str, str] = {}
    while data:
        length_text, _, rest = data.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            raise TarFormatError("a malformed pax record") from None
        record = data[len(length_text) + 1 : length]
        if length <= len(length_text) or not record.endswith(b"\n") or b"=" not in record:
            raise TarFormatError("a malformed pax record")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        data = data[length:]
    return records


def _template() -> bytes:
    """A plain file's ustar header with its name, size, time and checksum left blank."""
    block = bytearray(BLOCK)
    block[100:108] = b"0000644\0"  # mode
    block[108:124] = b"0000000\0" * 2  # owner and group: root, whom tar -o does not restore
    block[148:156] = b" " * 8  # the checksum counts its own field as blanks
    block[156:157] = b"0"
    block[257:265] = b"ustar\x0000"
    return bytes(block)


_TEMPLATE = _template()
_USTAR_LIMIT = 8**11  # sizes and times a ustar header holds in its 11 octal digits


def header(name: str, size: int, mtime: int) -> bytes:
    """The header of a plain file ``name`` (mode 0644)."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > 100 or size >= _USTAR_LIMIT:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, mtime, 0o644
        # GNU's long names, and sizes beyond 8 GiB in base-256: GNU tar, BusyBox and bsdtar
        # all read them.
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    # Built by hand: tarfile takes 18 µs a header, a tenth of a second per 5,000 objects.
    block = bytearray(_TEMPLATE)
    block[: len(raw)] = raw
    block[124:136] = b"%011o\0" % size
    block[136:148] = b"%011o\0" % mtime
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def write_member(
    out: IO[bytes], name: str, source: str, mtime: int, progress: Callable[[int], None]
) -> int:
    """Append the file ``source`` as ``name``: exactly the size its header states, or
    OSError (a file that shrinks meanwhile must not shift the members after it). A source
    that is gone raises FileNotFoundError before anything is written. ``progress`` hears of
    every piece written."""
    handle = os.open(source, os.O_RDONLY)
    try:
        size = os.fstat(handle).st_size
        out.write(header(name, size, mtime))
        left = size
        if size < _SMALL:
            data = os.read(handle, size)
            out.write(data)
            left -= len(data)
        elif sys.platform == "linux":
            out.flush()
            # Straight from the page cache into the pipe: the bytes never enter Python.
            while left:
                sent = os.sendfile(out.fileno(), handle, None, min(left, _CHUNK))
                if not sent:
                    break
                left -= sent
                progress(sent)
        else:
            while left and (chunk := os.read(handle, min(left, _CHUNK))):
                out.write(chunk)
                left -= len(chunk)
                progress(len(chunk))
        if left:
            raise OSError(f"{source} shrank while it was sent")
    finally:
        os.close(handle)
    out.write(bytes(-size % BLOCK))
    progress(size)
    return size


def end(out: IO[bytes]) -> None:
    """The two empty blocks that end an archive."""
    out.write(bytes(2 * BLOCK))
    out.flush()
