"""Activation memory and time per training step vs. depth for dense, log and nearest patterns
(one block). Fits the growth exponent: dense ~ L^2, log ~ L log L, nearest ~ L.

    python benchmarks/depth_scaling.py                  # CPU-sized defaults
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import activation_mb, step_seconds  # noqa: E402

from nas.engine.model import PatternNet  # noqa: E402
from nas.engine.run_config import ArchConfig  # noqa: E402
from search_spaces import template_pattern  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--depths", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--templates", nargs="+", default=["dense", "log", "nearest"])
    ap.add_argument("--k", type=int, default=4, help="K of nearest")
    ap.add_argument("--growth", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    arch = ArchConfig(growth=args.growth, bottleneck=True, stem_stride=2, input_shape=(1, 28, 28))
    x = torch.randn(args.batch, *arch.input_shape, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    print(f"device={device} batch={args.batch} growth={args.growth} input=1x28x28, stride-2 stem")
    print(f"{'template':10s} {'L':>5s} {'connections':>11s} {'act_MiB':>9s} {'ms/step':>9s}")
    for name in args.templates:
        mem, sec = [], []
        for L in args.depths:
            pattern = template_pattern(name, L, args.k)
            model = PatternNet(pattern, arch).to(device)
            mem.append(activation_mb(model, x))
            sec.append(step_seconds(model, x, y, args.iters, warmup=1))
            print(f"{name:10s} {L:5d} {pattern.connections:11d} {mem[-1]:9.1f} "
                  f"{1e3 * sec[-1]:9.1f}")
        slope_m = np.polyfit(np.log(args.depths), np.log(mem), 1)[0]
        slope_t = np.polyfit(np.log(args.depths), np.log(sec), 1)[0]
        ratio = [m / (L * np.log2(L)) for m, L in zip(mem, args.depths)]
        print(f"{name:10s} memory ~ L^{slope_m:.2f}, time ~ L^{slope_t:.2f}; "
              f"memory/(L log2 L) from {ratio[0]:.3f} to {ratio[-1]:.3f}")


if __name__ == "__main__":
    main()
