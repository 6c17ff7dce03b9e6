"""Train stage: fit a small CNN on data/<digit>/*.png and save it to model/model.pt.

Reads config/train.json ({"num_conv_filters": F}). PyTorch on the CPU, single-threaded with
fixed seeds and deterministic algorithms, so the same data and config give the same model
bytes on every run. The model is saved as TorchScript: evaluate.py loads it without needing
this file's class definition.
"""

import os
import sys

# TorchScript writes a module's constants in set order, which follows str hashing: without a
# fixed hash seed the same model would be saved with different bytes on every run.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

# BLAS and OpenMP read these when torch loads; one thread keeps float sums in a fixed order.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

CONFIG = Path("config/train.json")
DATA = Path("data")
MODEL = Path("model/model.pt")
SEED = 42
EPOCHS = 12
BATCH_SIZE = 32


class DigitNet(nn.Module):
    """conv(F, 5x5) -> relu -> maxpool 2 -> dropout -> linear(10)."""

    def __init__(self, num_conv_filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, num_conv_filters, kernel_size=5)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(0.25)
        self.fc = nn.Linear(num_conv_filters * 12 * 12, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.pool(torch.relu(self.conv(images)))
        return self.fc(self.dropout(torch.flatten(features, 1)))


def load_images(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """All PNGs below folder/<digit>/, in sorted path order, as (N,1,28,28) floats and labels."""
    paths = sorted(folder.glob("[0-9]/*.png"))
    if not paths:
        raise SystemExit(f"train: no images in {folder}/0..9; run the load stage first")
    pixels = np.stack([np.asarray(Image.open(path), dtype=np.float32) for path in paths])
    labels = [int(path.parent.name) for path in paths]
    images = torch.from_numpy(pixels / 255.0).unsqueeze(1)
    return images, torch.tensor(labels, dtype=torch.long)


def main() -> int:
    num_conv_filters = json.loads(CONFIG.read_text())["num_conv_filters"]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)

    images, labels = load_images(DATA)
    model = DigitNet(num_conv_filters)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(SEED)

    started = time.monotonic()
    for epoch in range(1, EPOCHS + 1):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(images), generator=order).split(BATCH_SIZE):
            optimizer.zero_grad()
            loss = loss_fn(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        print(f"train: epoch {epoch:2d}/{EPOCHS} loss {total / len(images):.4f}")

    MODEL.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    torch.jit.script(model).save(str(MODEL))
    print(
        f"train: {len(images)} images, {num_conv_filters} filters, "
        f"{time.monotonic() - started:.1f} s -> {MODEL}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
