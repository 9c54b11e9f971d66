"""Training of a pattern network: seeded, progress bar, per-epoch callback, NaN guard,
checkpoints (every N steps, at epoch ends, at a Ctrl-C) and an exact resume.

:func:`train` is the one entry point. :class:`Trainer` holds its steps (optimizer and
schedule, restore and save, one epoch, finish) so that another engine replaces pieces, not the
whole.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import math
import os
import resource
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import UserError
from ..settings import to_dict
from .loader import DataBundle, augment, batches, draw_order
from .memory import check_fits
from .model import PatternNet, build_model
from .run_config import DataConfig, TrainConfig

if TYPE_CHECKING:
    from .spec import PatternSpec

EpochCallback = Callable[[int, float], None]  # (epoch, val accuracy); may raise to stop


@dataclass
class TrainResult:
    status: Literal["ok", "diverged"] = "ok"
    val_accuracy: float = 0.0
    test_accuracy: float | None = None
    epochs: int = 0
    steps: int = 0
    loss_curve: list[float] = field(default_factory=list)  # mean training loss per epoch
    val_curve: list[float] = field(default_factory=list)   # val accuracy per epoch
    train_seconds: float = 0.0       # the whole run: training and evaluation
    eval_seconds: float = 0.0        # of which evaluating (validation after every epoch)
    images_per_second: float = 0.0   # training images over the time spent training them
    peak_memory_mb: float = 0.0      # CUDA: peak allocated; CPU: process peak RSS
    device: str = ""
    message: str = ""


class Trained(NamedTuple):
    spec: "PatternSpec"              # as trained: input shape and classes follow the dataset
    model: PatternNet
    result: TrainResult


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int, device: torch.device, threads: int = 0) -> None:
    """Seed torch; on CPU train on ``threads`` threads (0: OMP_NUM_THREADS, else every core)."""
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.set_num_threads(threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
                              or os.cpu_count() or 1)
        # Same seed, same accuracy: CPU kernels are deterministic with this set.
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run goes on: ``step`` steps into (1-based) ``epoch``."""

    epoch: int
    step: int
    steps_per_epoch: int
    steps: int                       # done in all
    total_steps: int

    def __str__(self) -> str:
        if self.steps >= self.total_steps:
            return f"all {self.total_steps} steps done"
        return (f"epoch {self.epoch}, step {self.step} of {self.steps_per_epoch} ({self.steps} "
                f"of {self.total_steps} steps done)")


def train(spec: "PatternSpec", data: DataBundle | DataConfig, cfg: TrainConfig, *,
          on_epoch: EpochCallback | None = None, on_batch: Callable[[], None] | None = None,
          eval_test: bool = False, progress: bool = True, checkpoint: Path | None = None,
          resume: bool = False, checkpoint_every: int | None = None,
          on_resume: Callable[[ResumePoint], None] | None = None) -> Trained:
    """Seed, build the network of ``spec`` and train it on ``data`` (a loaded bundle, or a
    config loaded here onto ``cfg.device``) for the budget in ``cfg``.

    On data of another input shape or class count the spec is scaled to it
    (:meth:`PatternSpec.scaled`). After every epoch the network is evaluated on the validation
    split and ``on_epoch(epoch, val_acc)`` is called (raise from it to stop, e.g. to prune);
    ``on_batch()`` is called before every batch (raise from it to stop at once: a study's Ctrl-C
    or SIGTERM, never inside a storage call). With ``checkpoint`` the state is saved after every
    epoch, every ``checkpoint_every`` steps, and when ``on_batch`` raises KeyboardInterrupt (a
    Ctrl-C); ``resume`` goes on from it exactly where it was (``on_resume`` hears where)."""
    if resume and (checkpoint is None or not checkpoint.is_file()):
        raise UserError(f"resume: no checkpoint at {checkpoint or '(none given)'}")
    if checkpoint is not None:  # an unwritable path fails now, not after the first epoch
        check_writable(checkpoint)
    if isinstance(data, DataConfig):
        data = data.load(resolve_device(cfg.device), with_test=eval_test)
    info = data.info
    spec = spec.scaled(input_shape=info.input_shape, num_classes=info.num_classes)
    check_fits(spec.pattern.stages, spec.pattern.connections, spec.arch, cfg.batch_size,
               f"pattern {spec.hash}")
    seed_everything(cfg.seed, data.train.labels.device, cfg.threads)
    model = build_model(spec)
    trainer = Trainer(model, data, cfg, on_epoch=on_epoch, on_batch=on_batch, progress=progress,
                      checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                      identity={"pattern": spec.hash, "architecture": to_dict(spec.arch)})
    if resume:
        point = trainer.restore()
        if on_resume is not None:
            on_resume(point)
    return Trained(spec, model, trainer.run(eval_test=eval_test))


def amp_context(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast where ``amp`` asks for it and the device has native bf16."""
    if amp and (device.type == "cuda" or device.type == "cpu" and cpu_has_bf16()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_has_bf16() -> bool:
    """Native bf16 (AVX512-BF16 or AMX): there, bf16 autocast trained the quickstart network
    1.35x faster on 2 cores; elsewhere it is emulated and slower, so fp32 is kept."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def best_memory_format(device: torch.device, amp: bool) -> torch.memory_format:
    # Measured on the quickstart network (CPU): channels_last steps 1.08x faster on 2 threads,
    # 1.2x on 1.
    return torch.contiguous_format if device.type == "cuda" and not amp else torch.channels_last


def _eval_batch(device: torch.device) -> int:
    return 2048 if device.type == "cuda" else 512  # a big GPU is launch-bound at small batches


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, split: str = "val",
             batch_size: int | None = None, amp: bool = True,
             on_batch: Callable[[], None] | None = None) -> float:
    """Top-1 accuracy of ``model`` on a split of ``data`` (``on_batch`` as in :func:`train`)."""
    part = getattr(data, split)
    device = part.labels.device
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    memory_format = best_memory_format(device, amp)
    with amp_context(device, amp):
        for x, y in batches(part, batch_size or _eval_batch(device), shuffle=False,
                            on_batch=on_batch):
            logits = model(data.normalise(x).contiguous(memory_format=memory_format))
            correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return correct.item() / max(1, len(part))


CHECKPOINT_FORMAT = 1


def check_writable(path: Path, what: str = "checkpoint") -> None:
    """Fail now, in one line, where ``what`` could not be written later: a directory in its
    place, or a folder that cannot hold a new file."""
    if path.is_dir():
        raise UserError(f"{what} {path}: is a directory; give a file path")
    with _exclusive_temp(path, what):
        pass


def write_atomically(path: Path, save: Callable[[BinaryIO], None],
                     what: str = "checkpoint") -> None:
    """``save(file)`` into a temporary file beside ``path``, synced, then moved into place:
    a reader finds the old file or the new one, never a part."""
    with _exclusive_temp(path, what) as (f, tmp):
        save(f)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)


@contextlib.contextmanager
def _exclusive_temp(path: Path, what: str) -> Iterator[tuple[BinaryIO, Path]]:
    """A new temporary file beside ``path``, created exclusively under a random name (never a
    file or link planted there), removed unless it was moved into place; a write that fails
    (disk full, no permission) is one clear error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"{what} {path}: cannot write there ({e.strerror})") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
    except OSError as e:
        raise UserError(f"{what} {path}: cannot write ({e.strerror or e})") from None
    except RuntimeError as e:  # torch.save reports a failed write as a RuntimeError
        raise UserError(f"{what} {path}: cannot write ({e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The state in a checkpoint file, its checksum verified. Loaded with ``weights_only``, so
    a crafted file cannot run code."""
    try:
        with warnings.catch_warnings():  # torch warns about protocols of foreign pickles
            warnings.simplefilter("ignore", UserWarning)
            outer = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(outer, dict) or outer.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a skipnas checkpoint")
        payload = outer["state"]
        if hashlib.sha256(payload).hexdigest() != outer["sha256"]:
            raise ValueError("its checksum does not match: the file was damaged or edited")
        state = torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
    except Exception as e:  # torch and pickle raise many types for a bad file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot resume from this checkpoint ({reason})") from None
    return state


@dataclass
class EpochProgress:
    """The running epoch: its batch order and how far it went (what a checkpoint taken inside
    it goes on from)."""

    order: torch.Tensor              # the training split's indices in this epoch's order
    loss_sum: torch.Tensor           # of its steps' losses (0-d, on the device: no sync a step)
    steps: int = 0                   # its batches trained

    def state(self) -> dict[str, Any]:
        return {"order": self.order, "loss_sum": self.loss_sum, "steps": self.steps}


class Trainer:
    """One training run of a built ``model``: its optimizer, schedule, batch order and result.
    :meth:`run` calls the steps below in order."""

    def __init__(self, model: nn.Module, data: DataBundle, cfg: TrainConfig, *,
                 on_epoch: EpochCallback | None = None,
                 on_batch: Callable[[], None] | None = None, progress: bool = True,
                 checkpoint: Path | None = None, checkpoint_every: int | None = None,
                 identity: dict[str, Any] | None = None):
        self.model, self.data, self.cfg = model, data, cfg
        self.on_epoch, self.progress = on_epoch, progress
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        # ``on_batch`` runs between two steps, where the state is whole: a Ctrl-C it raises is
        # saved first (without a checkpoint, a study's worker keeps its own callback).
        self.user_on_batch = on_batch
        self.on_batch = self.safe_point if checkpoint is not None and on_batch else on_batch
        self.device = data.train.labels.device
        self.memory_format = best_memory_format(self.device, cfg.amp)
        model.to(device=self.device, memory_format=self.memory_format)  # type: ignore[call-overload]
        self.steps_per_epoch = max(1, len(data.train) // cfg.batch_size)
        if cfg.steps is not None:
            self.total_steps = cfg.steps
        else:
            assert cfg.epochs is not None  # TrainConfig gives one of the two
            self.total_steps = cfg.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.optimizer, self.scheduler = self.make_optimizer()
        # Batch order and augmentation are drawn where the data lives: no host round trips.
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = (
            model if cfg.compile == "none" else torch.compile(model, mode=cfg.compile))
        self.result = TrainResult(device=str(self.device))
        self.epoch: EpochProgress | None = None  # None: between two epochs
        # What a checkpoint must match to be resumed by this run.
        self.identity = {**(identity or {}), "total_steps": self.total_steps,
                         **{k: v for k, v in to_dict(cfg).items() if k != "device"}}

    def make_optimizer(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """SGD (Nesterov when there is momentum) and a per-step schedule."""
        cfg = self.cfg
        optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
        scheduler: torch.optim.lr_scheduler.LRScheduler
        if cfg.schedule == "onecycle" and self.total_steps < 4:  # no room for two phases
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        elif cfg.schedule == "onecycle":
            # Warm up over a quarter of the steps, but at least 2, so both phases have >= 1.
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, cfg.lr, total_steps=self.total_steps,
                pct_start=max(0.25, 2 / self.total_steps))
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.total_steps)
        return optimizer, scheduler

    def safe_point(self) -> None:
        """Between two steps: call ``on_batch``; a Ctrl-C it raises saves the run first."""
        assert self.user_on_batch is not None
        try:
            self.user_on_batch()
        except KeyboardInterrupt:
            self.save()
            raise

    def state(self) -> dict[str, Any]:
        """Plain dicts, tensors and numbers only: loadable with ``weights_only=True``."""
        return {"identity": self.identity, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(), "result": dataclasses.asdict(self.result),
                "epoch": None if self.epoch is None else self.epoch.state()}

    def save(self) -> None:
        """Write the state and its sha256 atomically to the checkpoint path (if any)."""
        if self.checkpoint is None:
            return
        buffer = io.BytesIO()
        torch.save(self.state(), buffer)
        payload = buffer.getvalue()
        write_atomically(self.checkpoint, lambda f: torch.save(
            {"format": CHECKPOINT_FORMAT, "sha256": hashlib.sha256(payload).hexdigest(),
             "state": payload}, f))

    def restore(self) -> ResumePoint:
        """Continue from the checkpoint written by :meth:`save`, inside an epoch where it was
        taken there; a damaged, foreign or mismatched checkpoint is one clear error, never
        loaded."""
        assert self.checkpoint is not None
        state = read_checkpoint(self.checkpoint, self.device)
        theirs = state["identity"]
        differ = [k for k in sorted(set(theirs) | set(self.identity))
                  if theirs.get(k) != self.identity.get(k)]
        if differ:
            shown = "; ".join(f"{k} {theirs.get(k)!r} there, {self.identity.get(k)!r} here"
                              for k in differ[:3])
            raise UserError(f"{self.checkpoint}: written by another run ({shown}); resume with "
                            f"the same pattern and training settings, or start afresh")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        self.result = TrainResult(**state["result"])
        # Checkpoints from before mid-epoch saves hold none: they were taken between epochs.
        self.epoch = EpochProgress(**state["epoch"]) if state.get("epoch") else None
        return ResumePoint(self.result.epochs + 1, self.epoch.steps if self.epoch else 0,
                           self.steps_per_epoch, self.result.steps, self.total_steps)

    def run_epoch(self, bar: tqdm) -> tuple[float, int]:
        """The running epoch: one pass over the shuffled training split, or what a checkpoint
        taken inside it left (at most what is left of the step budget); returns its mean loss
        and the images trained here."""
        cfg, data, result = self.cfg, self.data, self.result
        if self.epoch is None:
            self.epoch = EpochProgress(draw_order(data.train, self.generator),
                                       torch.zeros((), device=self.device))
        epoch, images = self.epoch, 0
        self.model.train()
        for x, y in batches(data.train, cfg.batch_size, shuffle=True, drop_last=True,
                            on_batch=self.on_batch, order=epoch.order, start=epoch.steps):
            if result.steps >= self.total_steps:
                break
            x = data.normalise(augment(x, data.info.augment, self.generator))
            with amp_context(self.device, cfg.amp):
                loss = F.cross_entropy(self.forward(x.contiguous(memory_format=self.memory_format)),
                                       y, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            epoch.loss_sum += loss.detach()
            epoch.steps += 1
            images += len(y)
            result.steps += 1
            bar.update()
            # A diverged CPU run is caught within 20 steps; on a GPU this check would stall the
            # launch queue, so there it waits for the end of the epoch.
            if self.device.type == "cpu" and result.steps % 20 == 0 and \
                    not torch.isfinite(epoch.loss_sum):
                break
            if self.checkpoint_every and result.steps % self.checkpoint_every == 0:
                self.save()
        return (epoch.loss_sum / max(1, epoch.steps)).item(), images

    def end_epoch(self, epoch: int, mean_loss: float, bar: tqdm) -> bool:
        """Evaluate, record the epoch, checkpoint, call back; False when training must stop."""
        result = self.result
        if not math.isfinite(mean_loss):
            result.loss_curve.append(mean_loss)
            result.epochs = epoch + 1
            result.status = "diverged"
            result.message = f"training loss became {mean_loss} in epoch {epoch + 1}"
            return False
        bar.set_postfix(epoch=epoch + 1, loss=f"{mean_loss:.3f}", stage="evaluating")
        clock = time.perf_counter()
        # A Ctrl-C while evaluating saves the epoch as trained, not evaluated: the result is
        # recorded only after.
        accuracy = evaluate(self.model, self.data, "val", amp=self.cfg.amp,
                            on_batch=self.on_batch)
        result.eval_seconds += time.perf_counter() - clock
        result.loss_curve.append(mean_loss)
        result.epochs = epoch + 1
        result.val_accuracy = accuracy
        result.val_curve.append(accuracy)
        self.epoch = None
        bar.set_postfix(epoch=epoch + 1, loss=f"{mean_loss:.3f}", val=f"{accuracy:.3f}")
        self.save()
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, accuracy)
        return True

    def finish(self, images: int, elapsed: float, training: float,
               eval_test: bool) -> TrainResult:
        """Timing (``elapsed`` in all, ``training`` of it not evaluating), peak memory and
        (optionally) test accuracy."""
        result = self.result
        result.train_seconds += elapsed
        result.images_per_second = images / training if training > 0 else 0.0
        result.peak_memory_mb = _peak_memory_mb(self.device)
        if eval_test and self.data.test is not None and result.status == "ok":
            result.test_accuracy = evaluate(self.model, self.data, "test", amp=self.cfg.amp)
        return result

    def run(self, eval_test: bool = False) -> TrainResult:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        bar = tqdm(total=self.total_steps, initial=self.result.steps, disable=not self.progress,
                   leave=False, unit="step", dynamic_ncols=True)
        images = 0
        evaluated = self.result.eval_seconds  # a resumed run's earlier epochs: counted there
        clock = time.perf_counter()
        for epoch in range(self.result.epochs, self.epochs):
            mean_loss, seen = self.run_epoch(bar)
            images += seen
            if not self.end_epoch(epoch, mean_loss, bar):
                break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        bar.close()
        elapsed = time.perf_counter() - clock
        return self.finish(images, elapsed, elapsed - (self.result.eval_seconds - evaluated),
                           eval_test)
