"""The generated datasets: their shapes, full and quick, made once per shape with a fixed seed."""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

SEED = 20240607


@dataclass(frozen=True)
class Dataset:
    name: str
    files: int
    folders: int
    size: int  # bytes per file (mean, for mnist)
    jitter: int = 0  # sizes spread uniformly in size ± jitter

    def describe(self) -> str:
        if self.files == 1:
            return f"1 file of {_human(self.size)}"
        spread = f"~{_human(self.size)}" if self.jitter else _human(self.size)
        return f"{self.files:,} files of {spread} in {self.folders} folders"

    def signature(self) -> str:
        return f"{self.name}:{self.files}:{self.folders}:{self.size}:{self.jitter}:{SEED}"


FULL = {
    "many": Dataset("many", 20_000, 100, 4096),
    "big": Dataset("big", 1, 1, 1 << 30),
    "mnist": Dataset("mnist", 5_000, 10, 1024, jitter=400),
    "pipeline": Dataset("pipeline", 1_000, 10, 1024, jitter=400),
}
QUICK = {
    "many": Dataset("many", 2_000, 20, 4096),
    "big": Dataset("big", 1, 1, 64 << 20),
    "mnist": Dataset("mnist", 500, 10, 1024, jitter=400),
    "pipeline": Dataset("pipeline", 200, 10, 1024, jitter=400),
}


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def generate(ds: Dataset, root: Path) -> Path:
    """The dataset under root/<name>/data, made once per signature (fixed seed)."""
    base = root / "datasets" / ds.name
    data = base / "data"
    marker = base / "SIGNATURE"
    if marker.exists() and marker.read_text() == ds.signature():
        return data
    shutil.rmtree(base, ignore_errors=True)
    data.mkdir(parents=True)
    rng = random.Random(f"{SEED}:{ds.name}")
    if ds.files == 1:
        chunk = 16 << 20
        with open(data / "big.bin", "wb") as out:
            left = ds.size
            while left:
                n = min(chunk, left)
                out.write(rng.randbytes(n))
                left -= n
    else:
        per_folder = ds.files // ds.folders
        for index in range(ds.files):
            folder = data / f"{index // per_folder:03d}"
            if index % per_folder == 0:
                folder.mkdir(exist_ok=True)
            size = ds.size + (rng.randint(-ds.jitter, ds.jitter) if ds.jitter else 0)
            (folder / f"{index:06d}.bin").write_bytes(rng.randbytes(size))
    marker.write_text(ds.signature())
    return data


def touched_file(data: Path) -> Path:
    """The one file the 'status, one file touched' case touches: in the middle of the tree."""
    files = sorted(p for p in data.rglob("*") if p.is_file())
    return files[len(files) // 2]
