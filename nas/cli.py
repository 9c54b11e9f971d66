"""`skipnas` command line: a thin layer over the library API."""
from __future__ import annotations

import argparse
import sys

from search_spaces import TEMPLATES, Pattern, default_k, distance_stats, get_template

from .errors import USER_ERRORS
from .tables import format_table


def cmd_templates(args: argparse.Namespace) -> None:
    names = args.names or list(TEMPLATES)
    templates = [get_template(n) for n in names]
    k = default_k(args.layers) if args.k is None and args.layers > 0 else args.k
    rows = []
    for t in templates:
        block = t.block(args.layers, k)
        stats = distance_stats(Pattern([block]))
        rows.append([t.name, k if t.uses_k else "-", block.connections, stats.mbd, stats.mean])
    print(f"templates for one block of L={args.layers} layers (nodes 0..{args.layers + 1})")
    print(format_table(["template", "K", "connections", "MBD", "mean_distance"], rows))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skipnas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("templates", help="connections, MBD and mean distance of every template")
    p.add_argument("names", nargs="*", help="templates to show (default: all)")
    p.add_argument("--layers", "-L", type=int, required=True, help="layers in the block")
    p.add_argument("--k", "-k", type=int, default=None,
                   help="K for templates that take one (default: ceil(log2(L+1)))")
    p.set_defaults(func=cmd_templates)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as e:
        print(f"skipnas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skipnas: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
