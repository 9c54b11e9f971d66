"""`skipnas` command line: a thin layer over the library API."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .engine.run_config import COMPILE_MODES
from .errors import USER_ERRORS, UserError
from .interrupts import Terminated, terminate
from .text_tables import format_table

if TYPE_CHECKING:
    import optuna

    from .engine.run_config import DataConfig
    from .engine.spec import PatternSpec
    from .results import FidelityReport
    from .search import Bench, StudyConfig, StudyStatus, WorkerReport

# Commands import what they need when they run: the read-only ones (templates, study status,
# analyze, export) never load torch.


def cmd_templates(args: argparse.Namespace) -> None:
    from search_spaces import template_pattern, template_table

    rows = template_table(args.layers, args.k, args.names or None, args.style, args.budget,
                          args.block_output)
    layers = " ".join(map(str, args.layers))
    log = template_pattern("log", args.layers, style=args.style, output=args.block_output)
    budget = "each at its own count" if args.budget == "authors" else \
        f"at log's {log.connections} connections (fractional K)"
    print(f"templates for layers {layers}, style {args.style}, block output "
          f"{args.block_output}, {budget}")
    print(format_table(["template", "K", "connections", "MBD", "mean_distance"],
                       [[r.template + ("" if r.on_budget else " *"), r.k, r.connections, r.mbd,
                         r.mean_distance] for r in rows]))
    if not all(r.on_budget for r in rows):
        print("* cannot meet that budget: shown at its own count")


ARCH_FLAGS = ("growth", "bottleneck", "compression", "stem", "stem_stride", "memory_efficient")


def cmd_train(args: argparse.Namespace) -> None:
    from . import interrupts
    from .engine.handoff import Normalisation, RunFolder, as_trained, export_program, save_weights
    from .engine.run_config import DataConfig, TrainConfig
    from .engine.train import ResumePoint, check_writable, resolve_device, train

    data_cfg = DataConfig(name=args.dataset, root=args.data_dir or "",
                          image_size=args.image_size, train_size=args.train_size,
                          val_size=args.val_size, test_size=args.test_size,
                          split_seed=args.split_seed)
    data_cfg.check_root()
    cfg = TrainConfig(epochs=args.epochs, steps=args.steps, batch_size=args.batch_size,
                      lr=args.lr, schedule=args.schedule, label_smoothing=args.label_smoothing,
                      amp=not args.no_amp, compile=args.compile, seed=args.seed,
                      device=args.device)
    spec = _spec_to_train(args, data_cfg)
    # A spec file's run is full training: its files go to a folder of its own by default.
    out = RunFolder(Path(args.out)) if args.out else \
        RunFolder.default(spec, data_cfg.label, args.seed) if args.spec else None
    if args.export and out is None:
        raise UserError("--export writes into the run's folder: give --out DIR (a --template "
                        "run writes files only with --out)")
    checkpoint = Path(args.checkpoint) if args.checkpoint else out.checkpoint if out else None
    if out is not None:
        check_writable(out.weights, "weights")  # fails now, not after the training
    if checkpoint is not None and not args.quiet:
        print(f"checkpoint every {args.checkpoint_every} steps, after every epoch and at "
              f"Ctrl-C: {checkpoint}", file=sys.stderr)

    def resuming(point: ResumePoint) -> None:
        print(f"resuming {checkpoint}: {point}", file=sys.stderr)

    try:
        with interrupts.deferred():  # a Ctrl-C lands between two steps, and is saved there
            data = data_cfg.load(resolve_device(cfg.device), with_test=args.test)
            spec, model, result = train(
                spec, data, cfg, eval_test=args.test, progress=not args.quiet,
                on_batch=interrupts.check, checkpoint=checkpoint, resume=args.resume,
                checkpoint_every=args.checkpoint_every, on_resume=resuming)
    except KeyboardInterrupt:
        if checkpoint is not None and checkpoint.is_file():
            print(f"skipnas: the run so far is saved in {checkpoint}: the same command with "
                  f"--resume goes on from there", file=sys.stderr)
        raise
    files: dict[str, str] = {}
    if out is not None and result.status == "ok":
        spec = as_trained(spec, data)
        files = {"spec": str(spec.save(out.spec)), "weights": str(save_weights(model, out.weights))}
        if args.export:
            files["program"] = str(export_program(model, spec.arch.input_shape,
                                                  Normalisation.of(data), out.program))
    summary = {"pattern": spec.hash, "dataset": data_cfg.label, **spec.metrics, **vars(result)}
    if args.json:
        print(json.dumps({**summary, **files}, indent=1))
    else:
        print(format_table(["", "value"], [[k, v] for k, v in summary.items()
                                           if not isinstance(v, list)]))
        for name, path in files.items():
            print(f"{name}: {path}")
    if result.status != "ok":
        raise UserError(f"training stopped: {result.message}")


def _spec_to_train(args: argparse.Namespace, data_cfg: "DataConfig") -> "PatternSpec":
    """The spec file scaled for the data and the architecture flags (said in one line on
    stderr), or the --template pattern in a network of those flags."""
    from search_spaces import DEFAULT_STYLE, template_pattern

    from .engine.run_config import ArchConfig
    from .engine.spec import PatternSpec, check_measured, make_spec
    from .engine.stems import default_stem

    arch_flags = {k: getattr(args, k) for k in ARCH_FLAGS if getattr(args, k) is not None}
    info = data_cfg.info
    if args.spec:
        if args.template or args.style or args.k is not None:
            raise UserError("--template, --k and --style make a pattern and a spec file has "
                            "its own: give one, not both (a spec's network scales with "
                            "--growth, --stem, --layers and the other architecture flags)")
        source = PatternSpec.load(args.spec)
        check_measured(source, args.spec)
        searched_on = source.origin.get("dataset", args.dataset)
        if searched_on != args.dataset and not args.quiet:
            print(f"note: {args.spec} was searched on {searched_on}; trained here on "
                  f"{args.dataset}", file=sys.stderr)
        spec = source.scaled(layers=args.layers, input_shape=info.input_shape,
                             num_classes=info.num_classes, **arch_flags)
        if spec is not source:
            print(_scaling(source, spec, data_cfg.label), file=sys.stderr)
        return spec
    if not args.template:
        raise UserError("give a spec file or --template NAME --layers L")
    if "stem" not in arch_flags and "stem_stride" not in arch_flags:
        arch_flags["stem"] = default_stem(info.input_shape)
    arch = ArchConfig(**arch_flags, input_shape=info.input_shape, num_classes=info.num_classes)
    pattern = template_pattern(args.template, args.layers or [24], args.k,
                               args.style or DEFAULT_STYLE)
    return make_spec(pattern, arch, {"template": args.template, "k": args.k})


def _scaling(source: "PatternSpec", spec: "PatternSpec", dataset: str) -> str:
    """One line: what scaling the spec for this training changed."""
    changes = []
    for key, change in spec.origin["changed"].items():
        how = f" (by its rule: {change['rule']})" if "rule" in change else ""
        changes.append(f"{key} {change['from']} -> {change['to']}{how}")
    return (f"spec {source.digest} scaled for {dataset}: {', '.join(changes)}; "
            f"{source.metrics['params']:,} -> {spec.metrics['params']:,} params")


def _study_config(args: argparse.Namespace) -> StudyConfig:
    """The config with the command line's overrides (``--name``: another study from the same
    settings; its default SQLite file follows the name, an explicit storage stays)."""
    from .search import check_name, load_config

    cfg = load_config(args.config)
    name = getattr(args, "name", None)
    overrides = (("name", None if name is None else check_name(name)),
                 ("storage", args.storage),
                 ("trials", getattr(args, "trials", None)),
                 ("workers", getattr(args, "workers", None)))
    changes: dict[str, Any] = {k: v for k, v in overrides if v is not None}
    if getattr(args, "threads", None) is not None:
        changes["training"] = replace(cfg.training, threads=args.threads)
    return replace(cfg, **changes) if changes else cfg


def cmd_study_start(args: argparse.Namespace) -> None:
    from .search import create_study, mask_url, queued_trials, run_workers

    cfg = _study_config(args)
    clock = time.perf_counter()
    study = create_study(cfg, progress=not args.quiet)
    space = cfg.search_space
    print(f"study {cfg.name!r} in {mask_url(cfg.storage_url)}: {space.name} space "
          f"({space.style}), layers {list(space.layers)}, budget {space.build().budget} "
          f"connections")
    if args.queue_only:
        print(f"{queued_trials(study)} trials queued; no worker started here (`skipnas worker "
              f"CONFIG` runs them)")
        return
    report = run_workers(cfg, cfg.workers, study=study, progress=not args.quiet)
    _print_worker_report(cfg, report, time.perf_counter() - clock)


def cmd_confirm(args: argparse.Namespace) -> None:
    from .search import run_workers, start_confirm

    cfg = _study_config(args)
    clock = time.perf_counter()
    study, queued = start_confirm(cfg)
    print(f"confirm {cfg.name!r}: {cfg.confirm_plan()}; {queued} trials queued")
    report = run_workers(cfg, cfg.workers, study=study, progress=not args.quiet)
    _print_worker_report(cfg, report, time.perf_counter() - clock)


def cmd_fidelity(args: argparse.Namespace) -> None:
    from .search import (
        check_config,
        check_fidelity_config,
        load_study,
        mask_url,
        run_workers,
        start_fidelity,
    )

    cfg = _study_config(args)
    out = Path(args.out or f"fidelity_{cfg.name}")
    clock = time.perf_counter()
    levels = "; ".join(f"{name}: {f.describe()}" for name, f in cfg.fidelity_levels)
    if args.report_only:  # reads the study, writes nothing to it
        check_fidelity_config(cfg)
        study = load_study(cfg.name, cfg.storage_url)
        check_config(study, cfg)
        print(f"fidelity {cfg.name!r} in {mask_url(cfg.storage_url)}: {levels}")
    else:
        study, queued = start_fidelity(cfg)
        print(f"fidelity {cfg.name!r} in {mask_url(cfg.storage_url)}: {levels}; {queued} "
              f"trials queued")
        report = run_workers(cfg, cfg.workers, study=study, progress=not args.quiet)
        _print_worker_report(cfg, report, time.perf_counter() - clock)
    _report_fidelity(study, cfg, args.resamples, out)


def _report_fidelity(study: "optuna.Study", cfg: StudyConfig, resamples: int,
                     out: Path) -> "FidelityReport":
    """Print a fidelity study's report and write its files to ``out``."""
    from .results import fidelity_report, write_fidelity
    from .search import fidelity_table

    result = fidelity_report(fidelity_table(study, cfg), cfg.fidelity.target,
                             resamples=resamples)
    print(result.text())
    print(f"\nwrote {', '.join(str(p) for p in write_fidelity(result, out))}")
    return result


def cmd_calibrate(args: argparse.Namespace) -> None:
    from .results import study_time
    from .search import auto_workers, calibration_config, run_workers, start_fidelity

    study_cfg = _study_config(args)
    available = len(replace(study_cfg.data, train_size=None).load("cpu").train.labels)
    cfg = calibration_config(study_cfg, args.patterns, args.seeds, available)
    clock = time.perf_counter()
    study, queued = start_fidelity(cfg)
    levels = "; ".join(f"{name}: {f.describe()}" for name, f in cfg.fidelity_levels)
    print(f"calibrate {study_cfg.name!r} (study {cfg.name!r}): {args.patterns} patterns, "
          f"{args.seeds} seeds, {levels}; {queued} trials queued")
    report = run_workers(cfg, cfg.workers, study=study, progress=not args.quiet)
    _print_worker_report(cfg, report, time.perf_counter() - clock)
    result = _report_fidelity(study, cfg, args.resamples,
                              Path(args.out or f"calibrate_{study_cfg.name}"))
    workers = study_cfg.workers or auto_workers(study_cfg.training.device)
    print("\n" + study_time(result, study_cfg.trials, workers))


def cmd_study_check(args: argparse.Namespace) -> None:
    """Validate a config and show what it would run; writes nothing."""
    from .engine.memory import GIB, estimate_bytes
    from .search import baseline_slots, bench_slots

    cfg = _study_config(args)
    space = cfg.search_space.build()
    activations, weights = estimate_bytes(space.layers, space.budget, cfg.architecture,
                                          cfg.training.batch_size)
    baselines = len(baseline_slots(cfg))
    bench = f" + {len(bench_slots(cfg))} benchmark trainings" if cfg.bench.enabled else ""
    noise = f" + {cfg.noise.repeats} noise repeats" if cfg.noise.repeats else ""
    print(f"{args.config}: study {cfg.name!r}, {space.name} space ({space.style}), layers "
          f"{list(space.layers)}, budget {space.budget} connections; {cfg.trials} search "
          f"trials + {baselines} baselines{bench}{noise}; about {activations / GIB:.2f} GiB of "
          f"activations per batch of {cfg.training.batch_size}, {weights / GIB:.3f} GiB of "
          f"weights")
    print(f"confirm (skipnas confirm): {cfg.confirm_plan()}")
    if cfg.fidelity.enabled:
        from .search import fidelity_patterns, fidelity_slots

        levels = ", ".join(f"{name} ({f.describe()})" for name, f in cfg.fidelity_levels)
        print(f"fidelity (skipnas fidelity): {len(fidelity_patterns(cfg))} patterns at {levels}: "
              f"{len(fidelity_slots(cfg))} trainings")


def cmd_worker(args: argparse.Namespace) -> None:
    from .search import run_workers

    cfg = _study_config(args)
    clock = time.perf_counter()
    report = run_workers(cfg, cfg.workers, progress=not args.quiet)
    _print_worker_report(cfg, report, time.perf_counter() - clock)


def _print_worker_report(cfg: StudyConfig, report: WorkerReport, wall: float) -> None:
    from .search import study_status

    overhead = (report.seconds - report.train_seconds) / report.trials if report.trials else 0.0
    print(f"ran {report.trials} trials in {wall:.1f} s (orchestration outside training: "
          f"{overhead:.2f} s per trial)")
    status = study_status(cfg.name, cfg.storage_url)
    _print_status(status)
    if status.counts["FAIL"] and not status.counts["COMPLETE"]:
        raise UserError("no trial completed, every finished one failed: see their fail_reason "
                        "(`skipnas study status`, the report)")


def _print_status(status: StudyStatus) -> None:
    from .search import answer, describe_best, describe_noise, describe_winner

    counts = ", ".join(f"{k.lower()} {v}" for k, v in status.counts.items() if v)
    print(f"{status.study}: {counts or 'no trials'}"
          + (f"; {status.reused} reused" if status.reused else ""))
    best, ev = status.best, status.evidence
    if best is not None:
        print(f"best: trial {best.number} ({best.role}), pattern {best.hash}, {best.connections} "
              f"connections, MBD {best.mbd}")
        print(describe_best(ev))
        print(describe_noise(ev.noise))
        print(describe_winner(ev))
        print(f"answer: {answer(ev).sentence}")
    if status.eta_seconds:
        print(f"ETA: {status.eta_seconds / 60:.1f} min at {status.seconds_per_trial:.1f} s "
              f"per trial")


def cmd_study_status(args: argparse.Namespace) -> None:
    from .search import study_status

    status = study_status(*_study_ref(args))
    if args.json:
        print(json.dumps(status.to_json(), indent=1))
    else:
        _print_status(status)


def _study_ref(args: argparse.Namespace) -> tuple[str, str]:
    """The study a read command names, and its storage: a config file (its name and storage),
    or a study name (in --storage, else its default SQLite file)."""
    from .search import check_name, default_storage_url, load_config

    # A config is a .toml file or a path; a study name has neither (check_name says so).
    if args.name.endswith(".toml") or os.sep in args.name:
        cfg = load_config(args.name)
        return cfg.name, args.storage or cfg.storage_url
    check_name(args.name)  # a name, never a path: it also names files
    return args.name, args.storage or default_storage_url(args.name)


def cmd_analyze(args: argparse.Namespace) -> None:
    from .results import (
        analyze,
        confirmed_table,
        correlation_table,
        evidence_lines,
        regression_caption,
        regression_table,
        template_table,
    )
    from .search import answer, read_study

    result = analyze(read_study(*_study_ref(args)), budget=args.budget,
                     resamples=args.resamples)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
        return
    principle, ev = result.principle, result.evidence
    low, high = principle.accuracy_range
    print(f"study {principle.study}: {principle.trials_at_budget} completed trials at "
          f"{principle.budget} connections (of {principle.trials_total}); accuracy "
          f"{low:.4f}..{high:.4f}")
    print()
    print(format_table(*correlation_table(principle)))
    if principle.regression is not None:
        head, *notes = regression_caption(principle.regression)
        print(f"\n{head}")
        print(format_table(*regression_table(principle.regression)))
        for note in notes:
            print(note)
    if principle.templates:
        print("\ntemplates (accuracy over seeds)")
        print(format_table(*template_table(principle)))
    print()
    for line in evidence_lines(ev):
        print(line)
    print(f"answer: {answer(ev).sentence}")
    if ev.confirmed:
        print("\nconfirmed patterns (mean over seeds, 95% t-interval; difference from log: "
              "seeds paired, variance pooled over the confirmed patterns)")
        print(format_table(*confirmed_table(ev)))


def cmd_report(args: argparse.Namespace) -> None:
    from .results import analyze, write_report
    from .search import read_study

    study = read_study(*_study_ref(args))
    try:
        principle = analyze(study).principle
    except UserError as e:  # too few trials for correlations: the plots still help
        print(f"note: no correlation table ({e})", file=sys.stderr)
        principle = None
    print(f"wrote {write_report(study, args.out, principle)}")


def cmd_dashboard(args: argparse.Namespace) -> None:
    from .results import serve

    serve(*_study_ref(args), args.host, args.port)


def cmd_storage_proxy(args: argparse.Namespace) -> None:
    from .search import serve_proxy, server_keys

    keys = server_keys(args.tls_cert, args.tls_key, args.token_file)
    serve_proxy(args.storage, args.host, args.port, args.threads, keys)


def cmd_export(args: argparse.Namespace) -> None:
    from .results import Choice, trial_spec

    exported = trial_spec(*_study_ref(args), args.trial, Choice(args.pattern))
    spec = exported.spec
    path = spec.save(args.out)
    print(f"wrote {path}: pattern {spec.hash}, {spec.metrics['connections']} connections, MBD "
          f"{spec.metrics['mbd']}, {spec.metrics['params']} params")
    print(exported.note)


def cmd_bench_build(args: argparse.Namespace) -> None:
    from .search import build_bench

    clock = time.perf_counter()
    cfg = _study_config(args)
    out, report = build_bench(args.config, args.out, cfg=cfg, progress=not args.quiet)
    _print_worker_report(cfg, report, time.perf_counter() - clock)
    print(f"wrote {out}/table.csv, {out}/patterns.csv and {out}/bench.toml")
    from .search import load_bench

    _print_bench_summary(load_bench(out))


def cmd_bench_summary(args: argparse.Namespace) -> None:
    from .search import PATTERNS, load_bench, write_patterns

    bench = load_bench(args.bench)
    _print_bench_summary(bench)
    write_patterns(bench, Path(args.bench) / PATTERNS)
    print(f"wrote {Path(args.bench) / PATTERNS}")


def _print_bench_summary(bench: "Bench") -> None:
    """A built table's size, noise and reliability."""
    from .stats import pooled_std

    entries = list(bench.entries.values())
    means = [e.accuracy for e in entries]
    print(f"{bench.cfg.name}: {len(entries)} patterns x {len(bench.cfg.bench.seeds)} seeds; "
          f"means {min(means):.4f}..{max(means):.4f}"
          + (f" (std {statistics.stdev(means):.4f})" if len(means) > 1 else ""))
    if len(bench.cfg.bench.seeds) > 1:
        print(f"one seed's std around its pattern's mean: "
              f"{pooled_std([e.accuracies for e in entries])[0]:.4f}")
        print(bench.reliability().text())


def _bench_out(args: argparse.Namespace, kind: str, name: str) -> Path:
    """Where a benchmark's replay or proxies report goes: ``--out``, by default ./KIND_NAME;
    never the benchmark's own folder, whose table it would sit beside as if part of it."""
    out = Path(args.out or f"{kind}_{name}")
    if out.resolve() == Path(args.bench).resolve():
        raise UserError(f"--out {out}: that is the benchmark's own folder; write the "
                        f"{kind} report elsewhere (default ./{kind}_NAME)")
    return out


def cmd_bench_replay(args: argparse.Namespace) -> None:
    from .results import (
        regret_figure,
        replay_bench,
        strategy_table,
        table_figure,
        write_png,
        write_replay,
        zero_cost_table,
    )
    from .search import STRATEGIES, load_bench, strategy_config

    strategies = tuple(args.sampler or STRATEGIES)
    bench = load_bench(args.bench)
    out = _bench_out(args, "replay", bench.cfg.name)
    for name in strategies:
        strategy_config(bench.cfg, name)  # an unknown one: one error before any replay
    result = replay_bench(bench, strategies, args.repeats, args.trials,
                          progress=not args.quiet, resamples=args.resamples)
    print(f"{result.bench}: {result.patterns} patterns, top 5% = {result.top5_count}, "
          f"top 1% = {result.top1_count}; {result.repeats} repeats of "
          f"{result.trials} patterns\n")
    print(format_table(*strategy_table(result)))
    print("\nzero-cost scores against mean accuracy")
    print(format_table(*zero_cost_table(result.zero_cost)))
    paths = write_replay(result, out, bench)
    try:  # PNGs for READMEs, where headless Chromium is installed
        paths += [write_png(regret_figure(result), out / "regret.png"),
                  write_png(table_figure(bench), out / "accuracy_vs_mean_distance.png")]
    except UserError as e:
        print(f"note: no PNGs ({e})", file=sys.stderr)
    print(f"\nwrote {', '.join(str(p) for p in paths)}")


def cmd_bench_proxies(args: argparse.Namespace) -> None:
    from .engine.train import resolve_device
    from .results import load_batch, proxy_report, score_patterns, write_proxies
    from .search import load_bench

    bench = load_bench(args.bench)
    out = _bench_out(args, "proxies", bench.cfg.name)
    device = resolve_device(args.device or bench.cfg.training.device)
    images, labels = load_batch(bench.cfg, args.batch, device)
    scored = score_patterns(bench, images, labels, args.seed, progress=not args.quiet)
    result = proxy_report(bench, scored, args.batch, args.seed, str(device), args.resamples)
    print(result.text())
    paths = write_proxies(result, out)
    print(f"\nwrote {', '.join(str(p) for p in paths)}")


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    from .engine.datasets import DATASETS

    g.add_argument("--dataset", default="fashion-mnist", choices=list(DATASETS),
                   help="a built-in, or your own: folder (a folder of class folders of "
                        "images) or npz (an .npz file of arrays x and y)")
    g.add_argument("--data-dir", help="where the data is: the directory holding a built-in's "
                   "files, the folder of class folders (folder), the .npz file (npz)")
    g.add_argument("--image-size", type=_image_size, metavar="N|HxW",
                   help="folder: resize every image to N x N, or H x W, pixels (needed when "
                        "their sizes differ)")
    g.add_argument("--train-size", type=int, default=None, help="training images (default: all)")
    g.add_argument("--val-size", type=float, default=0.1,
                   help="validation images: a count, or a fraction below 1 (default 0.1)")
    g.add_argument("--test-size", type=int, default=None)
    g.add_argument("--split-seed", type=int, default=0)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other skipnas error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"skipnas: error: {self.prog}: {message} (see --help)\n")


def _at_least(low: int):
    """An argparse type: an integer >= ``low``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"  # argparse names it in "invalid ... value"
    return parse


_natural, _positive_int = _at_least(0), _at_least(1)


def _image_size(text: str) -> int | tuple[int, int]:
    """An argparse type: N, or HxW (height x width), in pixels."""
    sizes = [int(part) for part in text.lower().split("x")]
    if len(sizes) > 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give N or HxW, positive pixel counts")
    return sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1])


_image_size.__name__ = "image size"


_Commands = argparse._SubParsersAction  # what add_subparsers returns


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("skipnas")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="skipnas", description="Architecture search over the skip-connection patterns of "
        "DenseNet-style networks, at an exact connection budget (Log-DenseNet's principle).")
    parser.add_argument("--version", action="version", version=f"skipnas {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_templates_parser(sub)
    _add_train_parser(sub)
    _add_study_parser(sub)
    _add_analyze_parser(sub)
    _add_report_parser(sub)
    _add_dashboard_parser(sub)
    _add_export_parser(sub)
    _add_bench_parser(sub)
    _add_confirm_parser(sub)
    _add_fidelity_parser(sub)
    _add_calibrate_parser(sub)
    _add_worker_parser(sub)
    _add_storage_proxy_parser(sub)
    return parser


def _add_templates_parser(sub: _Commands) -> None:
    from search_spaces import BLOCK_OUTPUTS, DEFAULT_STYLE, STYLES

    p = sub.add_parser("templates", help="connections, MBD and mean distance of every template")
    p.add_argument("names", nargs="*", help="templates to show (default: all)")
    p.add_argument("--layers", "-L", type=int, nargs="+", required=True,
                   help="layers per block, one number per block")
    p.add_argument("--style", choices=STYLES, default=DEFAULT_STYLE,
                   help="network style: per_block, v1 (network-wide) or v2 (block compression)")
    p.add_argument("--budget", choices=["authors", "exact"], default="authors",
                   help="authors: each template at its own count; exact: at log's count, "
                        "K-templates with a fractional K")
    p.add_argument("--block-output", choices=BLOCK_OUTPUTS, default="template",
                   help="what each block's output node reads: template (the rule's inputs) or "
                        "all (every node of the block, as DenseNet's transition)")
    p.add_argument("--k", "-k", type=int, default=None,
                   help="K for templates that take one (default: floor(log2(L+1)) + 1, L the "
                        "layers the rule sees)")
    p.set_defaults(func=cmd_templates)


def _add_train_parser(sub: _Commands) -> None:
    from search_spaces import STYLES, TEMPLATES

    from .engine.stems import STEMS

    p = sub.add_parser("train", help="train a template briefly, or a spec file fully (scaled "
                       "for the dataset), and write its weights")
    p.add_argument("spec", nargs="?", help="pattern spec JSON (from `skipnas export`)")
    p.add_argument("--template", metavar="NAME", help="template name (instead of a spec): "
                   f"{', '.join(TEMPLATES)}")
    p.add_argument("--layers", "-L", type=int, nargs="+", default=None,
                   help="layers per block, one number per block (--template: default 24; a "
                        "spec: its pattern re-derived at these depths by the template or "
                        "offset rule that made it)")
    p.add_argument("--k", "-k", type=int, default=None, help="K for templates that take one")
    p.add_argument("--style", choices=STYLES, default=None,
                   help="network style of --template (default: per_block)")
    add_data_args(p)
    g = p.add_argument_group("architecture (a spec's network is scaled by these and by the "
                             "dataset's shape and classes)")
    g.add_argument("--growth", type=int)
    g.add_argument("--stem", choices=list(STEMS),
                   help="conv: 3x3 at --stem-stride (search networks); mnist: 28x28 grayscale, "
                        "3x3 stride 2; cifar: 32x32, 3x3 stride 1; imagenet: large images, 7x7 "
                        "stride 2 + max-pool (default: the one for the dataset's image size; "
                        "a spec trained as exported keeps its own)")
    g.add_argument("--bottleneck", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--compression", type=float)
    g.add_argument("--stem-stride", type=int, help="stride of the conv stem (1, 2 or 4)")
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
    g.add_argument("--no-amp", action="store_true",
                   help="fp32: no bf16 autocast (used on CUDA and on CPUs with native bf16)")
    g.add_argument("--compile", choices=COMPILE_MODES, default="none",
                   help="torch.compile mode for the training step (default: none, measured)")
    g.add_argument("--test", action="store_true", help="also report test-set accuracy")
    g = p.add_argument_group("files")
    g.add_argument("--out", metavar="DIR", help="the run's folder: spec.json (the network "
                   "trained), weights.pt (its state_dict), checkpoint.pt, model.pt2 with "
                   "--export (a spec file's default: runs/HASH-gGROWTH-STEM-DATASET-seedN; a "
                   "--template run writes files only with --out)")
    g.add_argument("--export", choices=["pt2"],
                   help="also write the trained network as a torch.export program (model.pt2: "
                        "torch.export.load runs it without skipnas)")
    g.add_argument("--checkpoint", help="checkpoint file (default: DIR/checkpoint.pt)")
    g.add_argument("--checkpoint-every", type=_positive_int, default=500, metavar="N",
                   help="steps between checkpoints, besides every epoch's end and a Ctrl-C "
                        "(default 500)")
    g.add_argument("--resume", action="store_true",
                   help="go on from the checkpoint exactly where it stopped, mid-epoch too")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _add_study_parser(sub: _Commands) -> None:
    p = sub.add_parser("study", help="start, resume or inspect an Optuna study")
    study_sub = p.add_subparsers(dest="study_command", required=True, parser_class=_Parser)
    q = study_sub.add_parser("start", help="create or resume a study and work on it")
    _add_study_run_args(q, name=True)
    q.add_argument("--queue-only", action="store_true",
                   help="create the study and queue its trials, but run none (workers on "
                        "other machines, or through a storage proxy, will)")
    q.set_defaults(func=cmd_study_start)
    q = study_sub.add_parser("check", help="validate a config, show what it would run "
                                           "(writes nothing)")
    q.add_argument("config", help="study config TOML")
    q.add_argument("--storage", help=argparse.SUPPRESS)
    q.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    q.set_defaults(func=cmd_study_check)
    q = study_sub.add_parser("status", help="trial counts, best trial, ETA")
    _add_study_ref_args(q)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_study_status)


def _add_analyze_parser(sub: _Commands) -> None:
    p = sub.add_parser("analyze", help="accuracy vs. backprop distance: rank correlations and "
                                       "a regression")
    _add_study_ref_args(p)
    p.add_argument("--budget", type=int, help="connection budget to analyze (default: study's)")
    p.add_argument("--resamples", type=_positive_int, default=2000,
                   help="bootstrap/permutation draws")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_analyze)


def _add_report_parser(sub: _Commands) -> None:
    p = sub.add_parser("report", help="self-contained HTML report of a study")
    _add_study_ref_args(p)
    p.add_argument("--out", default="report.html")
    p.set_defaults(func=cmd_report)


def _add_dashboard_parser(sub: _Commands) -> None:
    p = sub.add_parser("dashboard", help="serve optuna-dashboard for a study on 127.0.0.1")
    _add_study_ref_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_dashboard)


def _add_export_parser(sub: _Commands) -> None:
    p = sub.add_parser("export", help="write the pattern spec of the best (or a chosen) trial")
    _add_study_ref_args(p)
    p.add_argument("--trial", type=int, help="trial number (default: the best)")
    p.add_argument("--pattern", choices=("winner", "best-template", "answer"),
                   default="winner",
                   help="winner: the best confirmed mean (default); best-template: the "
                        "confirmed template with the best mean; answer: the pattern the "
                        "answer says to train (a template unless a searched one is ahead)")
    p.add_argument("--out", default="best.json")
    p.set_defaults(func=cmd_export)


def _add_bench_parser(sub: _Commands) -> None:
    p = sub.add_parser("bench", help="tabular benchmarks: build one, summarise its noise, replay "
                       "searches on it, rank zero-cost proxies on it")
    bench_sub = p.add_subparsers(dest="bench_command", required=True,
                                 metavar="{build,summary,replay,proxies}")
    q = bench_sub.add_parser("build", help="train every pattern of a benchmark config per seed "
                             "(resumable, many workers) and export its table")
    _add_study_run_args(q, trials=False)
    q.add_argument("--out", help="directory for table.csv and bench.toml "
                   "(default: studies/results/NAME)")
    q.set_defaults(func=cmd_bench_build)
    q = bench_sub.add_parser("summary", help="a built benchmark's noise and the reliability "
                             "of its per-pattern means; (re)writes its patterns.csv")
    q.add_argument("bench", help="benchmark directory (bench.toml and table.csv)")
    q.set_defaults(func=cmd_bench_summary)
    q = bench_sub.add_parser("replay", help="replay search strategies on a built benchmark "
                             "(no training): trials to the top 5%%/1%%, regret curves")
    q.add_argument("bench", help="benchmark directory (bench.toml and table.csv)")
    q.add_argument("--sampler", nargs="+",
                   help="strategies to compare: any sampler name, or screen:SCORE for the "
                        "screen maximising another zero-cost score (default: every "
                        "single-objective sampler and screen:-reads_of_node0)")
    q.add_argument("--repeats", type=_positive_int, default=30)
    q.add_argument("--trials", type=_positive_int, default=40,
                   help="trials of each search (default 40, as the README's results)")
    q.add_argument("--resamples", type=_positive_int, default=2000,
                   help="bootstrap resamples and permutations for the score correlations")
    q.add_argument("--out", help="where replay.json/.md/.html and the PNGs go (default: "
                   "./replay_NAME, never the benchmark's own folder)")
    q.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_bench_replay)
    q = bench_sub.add_parser("proxies", help="score every pattern of a built benchmark with "
                             "zero-cost proxies (snip, grad_norm, synflow, naswot, jacob_cov, "
                             "params, flops) at initialisation and with the distance scores; "
                             "rank each against the table")
    q.add_argument("bench", help="benchmark directory (bench.toml and table.csv)")
    q.add_argument("--batch", type=_positive_int, default=64,
                   help="training images in the one batch every network is scored on")
    q.add_argument("--seed", type=_natural, default=0, help="seed of the networks' weights")
    q.add_argument("--device", help="cpu, cuda, cuda:N (default: the bench config's)")
    q.add_argument("--resamples", type=_positive_int, default=2000,
                   help="bootstrap resamples and permutations for the correlations")
    q.add_argument("--out", help="where proxies.json/.md/.html/.png go (default: "
                   "./proxies_NAME, never the benchmark's own folder)")
    q.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_bench_proxies)


def _add_confirm_parser(sub: _Commands) -> None:
    p = sub.add_parser("confirm", help="re-train the study's top patterns and log with more "
                       "seeds (the [confirm] section), as trials of the same study")
    _add_study_run_args(p, trials=False, name=True)
    p.set_defaults(func=cmd_confirm)


def _add_fidelity_parser(sub: _Commands) -> None:
    p = sub.add_parser("fidelity", help="train one set of patterns at several fidelities (the "
                       "[fidelity] section) and report how well each ranks them against the "
                       "highest; run it again to resume")
    _add_study_run_args(p, trials=False)
    p.add_argument("--out", help="where fidelity.json/.md/.html/.png go (default: "
                   "./fidelity_NAME)")
    p.add_argument("--resamples", type=_positive_int, default=2000,
                   help="bootstrap resamples for the intervals")
    p.add_argument("--report-only", action="store_true",
                   help="report what is finished; train nothing")
    p.set_defaults(func=cmd_fidelity)


def _add_calibrate_parser(sub: _Commands) -> None:
    p = sub.add_parser("calibrate", help="before a big search: a small fidelity study over the "
                       "config's space (log and patterns spanning the distance range, at the "
                       "search's fidelity and two larger ones, the largest scored on the test "
                       "split) that recommends the fidelity and the study's wall time at it")
    _add_study_run_args(p, trials=False)
    p.add_argument("--patterns", type=_at_least(3), default=6,
                   help="patterns trained (log and PATTERNS-1 spanning the mean distance)")
    p.add_argument("--seeds", type=_at_least(3), default=3,
                   help="seeds per pattern at each level (each level its own)")
    p.add_argument("--out", help="where its fidelity.json/.md/.html/.png go (default: "
                   "./calibrate_NAME)")
    p.add_argument("--resamples", type=_positive_int, default=2000,
                   help="bootstrap resamples for the intervals")
    p.set_defaults(func=cmd_calibrate)


def _add_worker_parser(sub: _Commands) -> None:
    p = sub.add_parser("worker", help="one more worker on an existing study's storage")
    _add_study_run_args(p, trials=False, name=True)
    p.set_defaults(func=cmd_worker)


def _add_storage_proxy_parser(sub: _Commands) -> None:
    from .search import CA_ENV, PROXY_THREADS, TOKEN_ENV

    p = sub.add_parser("storage-proxy", help="serve a study database to workers at "
                       "grpc://HOST:PORT (fleets beyond the database's connection limit)")
    p.add_argument("--storage", required=True,
                   help="the database: sqlite:///FILE.db or postgresql+psycopg://...")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: this machine only, where any of its "
                        "users can connect; any other, e.g. 0.0.0.0, needs --tls-cert, "
                        "--tls-key and --token-file)")
    p.add_argument("--port", type=int, default=13000)
    p.add_argument("--threads", type=_positive_int, default=PROXY_THREADS,
                   help="calls served at once (over one pool of database connections)")
    p.add_argument("--tls-cert", metavar="PEM", help="the proxy's TLS certificate (workers "
                   f"trust it through {CA_ENV}; deploy/proxy-keys.sh makes one)")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    p.add_argument("--token-file", metavar="FILE", help="a file holding the token every call "
                   f"must present (workers name the file in {TOKEN_ENV})")
    p.set_defaults(func=cmd_storage_proxy)


def _add_study_ref_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="CONFIG|NAME", help="the study's config file (its name and "
                   "storage), or its name")
    p.add_argument("--storage", help="storage URL (default: the config's, or "
                   "sqlite:///studies/NAME.db)")


def _add_study_run_args(p: argparse.ArgumentParser, trials: bool = True,
                        name: bool = False) -> None:
    p.add_argument("config", help="study config TOML (see studies/)")
    if name:  # the commands that work on the config's study
        p.add_argument("--name", help="override the config's study name (its default storage "
                       "is then sqlite:///studies/NAME.db; a storage the config or --storage "
                       "names stays)")
    p.add_argument("--storage", help="override the config's storage URL")
    if trials:  # workers run what is queued; only `study start` sets the count
        p.add_argument("--trials", type=int,
                       help="override the config's number of search trials")
    p.add_argument("--workers", type=_natural,
                   help="worker processes on this machine, sharing its cores or GPUs "
                        "(default: the config's workers; 0: one per CPU core, or 4 per GPU)")
    p.add_argument("--threads", type=_positive_int,
                   help="CPU threads each worker trains on (default: the config's [training] "
                        "threads; unset, this machine's workers of the study share its cores)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


# Commands whose workers give an interrupted trial back: its slot is queued again.
WORKING = {"start", "worker", "confirm", "fidelity", "calibrate", "build"}


def _interrupted(args: argparse.Namespace) -> str:
    """What a Ctrl-C or SIGTERM left, in words."""
    command = getattr(args, "study_command", None) or getattr(args, "bench_command", None) \
        or args.command
    if command in WORKING and not getattr(args, "queue_only", False):
        return ("; the trial in progress was marked interrupted and queued again: run the same "
                "command (or `skipnas worker CONFIG`) to go on")
    if command == "train":
        return "; with --checkpoint, `--resume` goes on from the last checkpoint written"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(format="skipnas: %(message)s", level=logging.WARNING)
    if args.command not in ("templates", "train"):
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        args.func(args)
    except USER_ERRORS as e:
        print(f"skipnas: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an output path that cannot be written, a port in use, ...
        where = f" {e.filename}" if e.filename else ""
        print(f"skipnas: error: {e.strerror or e}{':' if where else ''}{where}", file=sys.stderr)
        return 2
    except Exception as e:
        from .search import storage_failure
        if (failure := storage_failure(e)) is None:
            raise
        print(f"skipnas: error: {failure}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"skipnas: terminated{_interrupted(args)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"skipnas: interrupted{_interrupted(args)}", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
