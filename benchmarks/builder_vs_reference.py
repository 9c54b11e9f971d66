"""Throughput and memory of skipnas' pattern builder vs. a plain DenseNet written here
independently (torch.cat of the running feature map, as the original implementations),
for the same dense configuration, measured in one run.

    python benchmarks/builder_vs_reference.py            # CPU-sized defaults
    python benchmarks/builder_vs_reference.py --layers 16 16 16 --batch 128   # BC-100, GPU
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import activation_mb, cuda_peak_mb, interleaved_step_seconds  # noqa: E402

from nas.engine.model import PatternNet, count_params  # noqa: E402
from nas.engine.run_config import ArchConfig  # noqa: E402
from search_spaces import template_pattern  # noqa: E402


class RefLayer(nn.Module):
    def __init__(self, c: int, k: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, 4 * k, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(4 * k), nn.Conv2d(4 * k, k, 3, padding=1, bias=False)

    def forward(self, x):
        new = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([x, new], 1)


class RefDenseNet(nn.Module):
    """DenseNet-BC: every layer's input is the concatenation of all earlier feature maps."""

    def __init__(self, layers: list[int], k: int, in_ch: int, classes: int):
        super().__init__()
        c = 2 * k
        mods: list[nn.Module] = [nn.Conv2d(in_ch, c, 3, padding=1, bias=False)]
        for b, n in enumerate(layers):
            for _ in range(n):
                mods.append(RefLayer(c, k))
                c += k
            if b < len(layers) - 1:
                mods += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False),
                         nn.AvgPool2d(2)]
                c //= 2
        mods += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                 nn.Linear(c, classes)]
        self.net = nn.Sequential(*mods)

    def forward(self, x):
        return self.net(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", type=int, nargs="+", default=[8, 8, 8])
    ap.add_argument("--growth", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    models = {
        "skipnas(dense)": PatternNet(template_pattern("dense", args.layers),
                                     ArchConfig(growth=args.growth)).to(device),
        "skipnas(dense,memory_efficient)": PatternNet(
            template_pattern("dense", args.layers),
            ArchConfig(growth=args.growth, memory_efficient=True)).to(device),
        "reference": RefDenseNet(args.layers, args.growth, 3, 10).to(device),
    }
    counts = {n: count_params(m) for n, m in models.items()}
    assert len(set(counts.values())) == 1, f"configs differ: {counts}"
    print(f"device={device} layers={args.layers} growth={args.growth} batch={args.batch} "
          f"params={counts['reference']}")
    seconds = interleaved_step_seconds(models, x, y, rounds=args.rounds)
    rows = {}
    for name, model in models.items():
        rows[name] = (args.batch / seconds[name], activation_mb(model, x),
                      cuda_peak_mb(model, x, y))
        ips, act, peak = rows[name]
        print(f"{name:32s} images/s={ips:9.1f}  activation_MiB={act:8.1f}"
              + (f"  cuda_peak_MiB={peak:8.1f}" if peak is not None else ""))
    ours, ref = rows["skipnas(dense)"], rows["reference"]
    print(f"throughput ratio (skipnas/reference) = {ours[0] / ref[0]:.3f}")
    print(f"activation memory ratio (reference/skipnas) = {ref[1] / ours[1]:.3f}")
    lean = rows["skipnas(dense,memory_efficient)"]
    print(f"memory_efficient: activation memory x{lean[1] / ref[1]:.3f} of reference, "
          f"throughput x{lean[0] / ref[0]:.3f}")


if __name__ == "__main__":
    main()
