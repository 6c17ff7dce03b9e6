"""DVC 3's hash memo, read so that repro hashes nothing DVC already hashed.

DVC keeps (path → md5) rows in a diskcache sqlite file under its site cache dir
(``/var/tmp/dvc/repo/TOKEN/hashes/local/cache.db``), each checked against a token of the
file's (inode, mtime, size) when read. A row whose token still matches the file is what DVC
itself would trust; repro takes those rows into its own memo, keyed by (inode, mtime_ns, size).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import sqlite3
import stat
from pathlib import Path

from repro.memo.state import FileKey, file_key
from repro.paths import is_within

# What DVC 3 mixes into the name of a repository's folder (dvc/repo/__init__.py
# site_cache_dir): its major version and a salt it bumps to drop broken memos.
_DVC_MAJOR = 3
_SALT = 0
_HASH_VERSION = 1  # of a row's JSON (dvc_data/hashfile/state.py)


def memo_path(root: Path, site_cache_dir: str) -> Path | None:
    """Where DVC 3 keeps the hash memo of the project at ``root``; None when it has none."""
    try:  # DVC stamps a repository's memo folder with this file's mtime
        btime = os.stat(root / ".dvc" / "tmp" / "btime").st_mtime
    except OSError:
        return None
    token = (str(root), None, btime, getpass.getuser(), _DVC_MAJOR, _SALT)
    name = hashlib.md5(str(token).encode(), usedforsecurity=False).hexdigest()
    return Path(site_cache_dir) / "repo" / name / "hashes" / "local" / "cache.db"


def _token(st: os.stat_result) -> str:
    """DVC's check of a row: fsspec's tokenize of [inode, mtime (float seconds), size]."""
    text = str(([st.st_ino, st.st_mtime, st.st_size],))
    return str(int(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(), 16))


def trusted_rows(root: Path, memo: Path) -> list[tuple[FileKey, str]]:
    """(key, md5) of every file of the project that DVC's memo knows and that has not
    changed since. A memo another user could have written is not read: the folder DVC keeps
    it in is shared by every user of the machine."""
    try:
        st = os.stat(memo)
    except OSError:
        return []
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        return []
    try:
        with sqlite3.connect(f"{memo.as_uri()}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT key, value FROM Cache WHERE raw = 1").fetchall()
    except sqlite3.Error:
        return []  # only a memo: without it repro hashes the files itself
    base = str(root)
    found = []
    for path, value in rows:
        if not isinstance(path, str) or not is_within(path, base) or path == base:
            continue
        row = _file_row(value)
        if row is None:
            continue
        try:
            now = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(now.st_mode) and row[1] == _token(now):
            found.append((file_key(now), row[0]))
    return found


def _file_row(value: object) -> tuple[str, str] | None:
    """(md5, token) of a file's row; None for a folder's, an older format's or a damaged one."""
    try:
        entry = json.loads(str(value))
        md5, token, version = entry["hash_info"]["md5"], entry["checksum"], entry["version"]
    except (ValueError, KeyError, TypeError):
        return None
    if version != _HASH_VERSION or not isinstance(md5, str) or md5.endswith(".dir"):
        return None
    return md5, str(token)
