"""The reference pipeline end to end, its bugs fixed: what users would otherwise run.

The lab report's AE (784-256-64-20, ReLU on the code) trained as the report trains it --
torchvision's MNIST through a DataLoader with per-image ``transforms.ToTensor()``, batch 64,
``torch.optim.Adam(lr=1e-3)``, ``StepLR(step_size=6, gamma=0.1)``, MSE against the input
(not the label), ``loss.item()`` each step -- then the codes of the train and test sets
(through DataLoaders) read by one linear probe, with aebench's own probe code (instead of
the report's arg-max over code units).  ``benchmarks/throughput.py`` times this whole
command against ``aebench experiment=seed_report``.

    python benchmarks/reference_e2e.py [--epochs 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms

from aebench import config, data, models, probe


def main() -> None:
    t_start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = data.resolve_root(None)
    data.prepare("mnist", root)
    torch.manual_seed(0)
    train_set = torchvision.datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    test_set = torchvision.datasets.MNIST(str(root), train=False, download=False, transform=transforms.ToTensor())
    loader = DataLoader(train_set, batch_size=64, shuffle=True)
    model = models.from_config(config.compose(["experiment=seed_report"]), 784)  # the reference report's AE
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=6, gamma=0.1)
    t = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        running = 0.0
        for images, _ in loader:
            x = images.view(-1, 784)
            loss = F.mse_loss(model.reconstruct(x), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
        scheduler.step()
        print(f"epoch {epoch + 1}: loss {running / len(loader):.4f}", flush=True)
    train_seconds = time.perf_counter() - t

    t = time.perf_counter()
    model.eval()
    codes, labels = {}, {}
    with torch.no_grad():
        for name, dataset in (("train", train_set), ("test", test_set)):
            parts = [(model.encode(images.view(-1, 784)), y) for images, y in DataLoader(dataset, batch_size=1000)]
            codes[name] = torch.cat([c for c, _ in parts])
            labels[name] = torch.cat([y for _, y in parts])
    result = probe.linear_probe(codes["train"], labels["train"], codes["test"], labels["test"])
    probe_seconds = time.perf_counter() - t
    out = {"probe_accuracy": result.accuracy, "train_seconds": train_seconds, "probe_seconds": probe_seconds,
           "total_seconds": time.perf_counter() - t_start}
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
