"""Load stage: copy `num_images` real MNIST digits into data/<digit>/.

Reads config/load.json ({"num_images": N}) and takes the first N images of the training pool
baked into the stage image (see docker/stage/prepare_mnist.py): a balanced sample, and a
bigger N always extends a smaller one. Run from the project root.
"""

import json
import os
import shutil
import sys
from pathlib import Path

MNIST_DIR = Path(os.environ.get("MNIST_DIR", "/opt/mnist"))
CONFIG = Path("config/load.json")
DATA = Path("data")


def main() -> int:
    num_images = json.loads(CONFIG.read_text())["num_images"]
    pool = (MNIST_DIR / "train" / "index.txt").read_text().split()
    if not isinstance(num_images, int) or not 0 < num_images <= len(pool):
        print(
            f"load: num_images in {CONFIG} must be 1..{len(pool)}, got {num_images!r}",
            file=sys.stderr,
        )
        return 1

    # Start from nothing so that a smaller num_images never leaves extra images behind.
    shutil.rmtree(DATA, ignore_errors=True)
    for digit in range(10):
        (DATA / str(digit)).mkdir(parents=True)
    for name in pool[:num_images]:
        shutil.copyfile(MNIST_DIR / "train" / name, DATA / name)
    print(f"load: copied {num_images} MNIST images into {DATA}/0..9")
    return 0


if __name__ == "__main__":
    sys.exit(main())
