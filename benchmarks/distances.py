"""Time of the all-pairs backprop distances for large networks (target: 4 blocks x 200 layers
in well under a second).

    python benchmarks/distances.py
"""
from __future__ import annotations

import time

from search_spaces import distance_stats, template_pattern


def main() -> None:
    print(f"{'template':22s} {'blocks x L':>10s} {'nodes':>6s} {'connections':>11s} "
          f"{'MBD':>5s} {'seconds':>8s}")
    for name in ("dense", "log", "nearest", "chain"):
        pattern = template_pattern(name, [200] * 4, 8)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            stats = distance_stats(pattern)
            times.append(time.perf_counter() - start)
        print(f"{name:22s} {'4 x 200':>10s} {pattern.num_nodes:6d} {pattern.connections:11d} "
              f"{stats.mbd:5d} {sorted(times)[2]:8.3f}")


if __name__ == "__main__":
    main()
