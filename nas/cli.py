"""`skipnas` command line: a thin layer over the library API."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search_spaces import (TEMPLATES, Pattern, default_k, distance_stats, get_template,
                           template_pattern)

from .data import DATASETS, DataConfig, get_dataset
from .errors import USER_ERRORS, UserError
from .model import ArchConfig
from .spec import PatternSpec, make_spec
from .train import TrainConfig, train_spec
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


ARCH_FLAGS = ("growth", "bottleneck", "compression", "stem_stride", "memory_efficient")


def cmd_train(args: argparse.Namespace) -> None:
    arch_flags = {k: getattr(args, k) for k in ARCH_FLAGS if getattr(args, k) is not None}
    if args.spec:
        if args.template or arch_flags:
            raise UserError("give either a spec file or --template with architecture flags, "
                            "not both")
        spec = PatternSpec.load(args.spec)
    else:
        if not args.template:
            raise UserError("give a spec file or --template NAME --layers L")
        info = get_dataset(args.dataset)
        arch = ArchConfig(**arch_flags, input_shape=info.input_shape,
                          num_classes=info.num_classes)
        pattern = template_pattern(args.template, args.layers, args.k)
        spec = make_spec(pattern, arch, {"template": args.template, "k": args.k})
    data_cfg = DataConfig(name=args.dataset, root=args.data_dir or "",
                          train_size=args.train_size, val_size=args.val_size,
                          test_size=args.test_size, split_seed=args.split_seed)
    cfg = TrainConfig(epochs=args.epochs, steps=args.steps, batch_size=args.batch_size,
                      lr=args.lr, schedule=args.schedule, label_smoothing=args.label_smoothing,
                      amp=not args.no_amp, seed=args.seed, device=args.device)
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if args.resume and (checkpoint is None or not checkpoint.is_file()):
        raise UserError(f"--resume needs an existing --checkpoint file, got {args.checkpoint!r}")
    spec, _, result = train_spec(spec, data_cfg, cfg, eval_test=args.test, progress=not args.quiet,
                                 checkpoint=checkpoint, resume=args.resume)
    summary = {"pattern": spec.hash, "dataset": args.dataset, **spec.metrics,
               **{k: v for k, v in vars(result).items() if k != "extra"}}
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(format_table(["", "value"], [[k, v] for k, v in summary.items()
                                       if not isinstance(v, list)]))
    if result.status != "ok":
        raise UserError(f"training stopped: {result.message}")


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="fashion-mnist", choices=list(DATASETS))
    g.add_argument("--data-dir", help="directory holding the dataset files")
    g.add_argument("--train-size", type=int, default=None, help="training images (default: all)")
    g.add_argument("--val-size", type=float, default=0.1,
                   help="validation images: a count, or a fraction below 1 (default 0.1)")
    g.add_argument("--test-size", type=int, default=None)
    g.add_argument("--split-seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skipnas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("templates", help="connections, MBD and mean distance of every template")
    p.add_argument("names", nargs="*", help="templates to show (default: all)")
    p.add_argument("--layers", "-L", type=int, required=True, help="layers in the block")
    p.add_argument("--k", "-k", type=int, default=None,
                   help="K for templates that take one (default: ceil(log2(L+1)))")
    p.set_defaults(func=cmd_templates)

    p = sub.add_parser("train", help="train a template or a spec file briefly or fully")
    p.add_argument("spec", nargs="?", help="pattern spec JSON (from `skipnas export`)")
    p.add_argument("--template", help="template name (instead of a spec)")
    p.add_argument("--layers", "-L", type=int, nargs="+", default=[24],
                   help="layers per block, one number per block (default: 24)")
    p.add_argument("--k", "-k", type=int, default=None, help="K for templates that take one")
    add_data_args(p)
    g = p.add_argument_group("architecture (with --template)")
    g.add_argument("--growth", type=int)
    g.add_argument("--bottleneck", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--compression", type=float)
    g.add_argument("--stem-stride", type=int)
    g.add_argument("--memory-efficient", action=argparse.BooleanOptionalAction, default=None)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=2)
    g.add_argument("--steps", type=int, default=None, help="optimiser steps (overrides epochs)")
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument("--lr", type=float, default=0.1)
    g.add_argument("--schedule", choices=["onecycle", "cosine"], default="onecycle")
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--no-amp", action="store_true", help="no bf16 autocast/channels_last on CUDA")
    g.add_argument("--test", action="store_true", help="also report test-set accuracy")
    g.add_argument("--checkpoint", help="save state here after every epoch")
    g.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
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
