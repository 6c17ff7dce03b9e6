"""Evaluate stage: accuracy and loss of model/model.pt on held-out MNIST digits.

The test images live in the stage image (MNIST_DIR/test/<digit>/) and are disjoint from the
pool the load stage copies from. Writes {"acc": …, "loss": …} to model/metrics.json.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

MNIST_DIR = Path(os.environ.get("MNIST_DIR", "/opt/mnist"))
MODEL = Path("model/model.pt")
METRICS = Path("model/metrics.json")


def main() -> int:
    torch.set_num_threads(1)
    paths = sorted((MNIST_DIR / "test").glob("[0-9]/*.png"))
    pixels = np.stack([np.asarray(Image.open(path), dtype=np.float32) for path in paths])
    images = torch.from_numpy(pixels / 255.0).unsqueeze(1)
    labels = torch.tensor([int(path.parent.name) for path in paths], dtype=torch.long)

    model = torch.jit.load(str(MODEL))
    model.eval()
    with torch.no_grad():
        logits = model(images)
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    acc = (logits.argmax(dim=1) == labels).float().mean().item()

    metrics = {"acc": round(acc, 6), "loss": round(loss, 6)}
    METRICS.write_text(json.dumps(metrics) + "\n")
    print(f"evaluate: {len(paths)} held-out images: {json.dumps(metrics)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
