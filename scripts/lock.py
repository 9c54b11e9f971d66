"""Write constraints.txt: every package skipnas (with its test and postgres extras) needs,
directly or not, at the version installed here, where the whole suite passed. The README's two
commands install with `-c constraints.txt`, so a fresh machine gets the tested versions.

    python scripts/lock.py        # after upgrading a dependency and running the suite
"""
from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def closure(name: str, extras: set[str]) -> dict[str, str]:
    """Installed name -> version of ``name``'s requirements (with ``extras``), transitively."""
    found: dict[str, str] = {}
    todo = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        dist = distribution(current)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in wanted | {""}):
                continue
            key = re.sub(r"[-_.]+", "-", req.name).lower()
            try:
                version = distribution(req.name).version
            except PackageNotFoundError:  # an optional platform package not installed here
                continue
            if key not in found:
                found[key] = version
                todo.append((req.name, set(req.extras)))
    return found


def main() -> None:
    pins = closure("skipnas", {"test", "postgres"})
    pins.pop("skipnas", None)
    # A local label (torch's "+cpu") is dropped: pip picks the CPU or CUDA build of the version.
    lines = [f"{name}=={version.split('+')[0]}" for name, version in sorted(pins.items())]
    (ROOT / "constraints.txt").write_text(
        "# The versions the suite passed with; written by scripts/lock.py. Installed with\n"
        "# `pip install -e \".[test]\" -c constraints.txt` (scripts/test.sh, quickstart.sh).\n"
        + "\n".join(lines) + "\n")
    print(f"constraints.txt: {len(lines)} packages")


if __name__ == "__main__":
    main()
