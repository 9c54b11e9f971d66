"""Brief training of a pattern network: seeded, progress bar, per-epoch callback, NaN guard."""
from __future__ import annotations

import contextlib
import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from search_spaces import Pattern

from .data import DataBundle, DataConfig, augment, batches
from .errors import UserError
from .model import ArchConfig, build
from .settings import require

if TYPE_CHECKING:
    from .spec import PatternSpec

EpochCallback = Callable[[int, float], None]  # (epoch, val accuracy); may raise to stop


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | None = 2           # training budget: epochs, or ...
    steps: int | None = None         # ... optimiser steps (overrides epochs)
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    label_smoothing: float = 0.0
    amp: bool = True                 # bf16 autocast + channels_last, CUDA only
    seed: int = 0
    device: str = "auto"             # "auto", "cpu", "cuda", "cuda:1", ...

    def __post_init__(self):
        require(self.epochs is None or self.epochs >= 1, "epochs", "must be >= 1")
        require(self.steps is None or self.steps >= 1, "steps", "must be >= 1")
        require(self.epochs is not None or self.steps is not None, "epochs",
                "give epochs or steps")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.lr > 0, "lr", "must be > 0")
        require(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")


@dataclass
class TrainResult:
    status: Literal["ok", "diverged"]
    val_accuracy: float
    test_accuracy: float | None
    epochs: int
    steps: int
    loss_curve: list[float]          # mean training loss per epoch
    val_curve: list[float]           # val accuracy per epoch
    train_seconds: float
    images_per_second: float
    peak_memory_mb: float            # CUDA: peak allocated; CPU: process peak RSS
    device: str
    message: str = ""


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
        # Same seed, same accuracy: CPU kernels are deterministic with this set.
        torch.use_deterministic_algorithms(True, warn_only=True)


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, split: str = "val", batch_size: int = 512,
             amp: bool = True) -> float:
    """Top-1 accuracy of ``model`` on a split of ``data``."""
    part = getattr(data, split)
    device = part.labels.device
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    memory_format = _memory_format(device, amp)
    with _autocast(device, amp):
        for x, y in batches(part, batch_size, shuffle=False):
            logits = model(data.normalise(x).contiguous(memory_format=memory_format))
            correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return correct.item() / max(1, len(part))


def _memory_format(device: torch.device, amp: bool):
    return torch.channels_last if device.type == "cuda" and amp else torch.contiguous_format


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def fit(pattern: Pattern, arch: ArchConfig, data: DataBundle, cfg: TrainConfig,
        **kwargs) -> tuple[nn.Module, TrainResult]:
    """Seed, build the network for ``pattern`` and ``arch``, and :func:`train` it."""
    seed_everything(cfg.seed, data.train.labels.device)
    model = build(pattern, arch)
    return model, train(model, data, cfg, **kwargs)


def train(model: nn.Module, data: DataBundle, cfg: TrainConfig, *,
          on_epoch: EpochCallback | None = None, eval_test: bool = False, progress: bool = True,
          checkpoint: Path | None = None, resume: bool = False) -> TrainResult:
    """Train ``model`` on ``data.train`` for the budget in ``cfg``; evaluate on ``data.val`` after
    every epoch and call ``on_epoch(epoch, val_acc)`` (raise from it to stop, e.g. to prune).
    With ``checkpoint``, state is saved after every epoch; ``resume`` continues from it."""
    device = data.train.labels.device
    seed_everything(cfg.seed, device)
    memory_format = _memory_format(device, cfg.amp)
    model.to(device=device, memory_format=memory_format)
    steps_per_epoch = max(1, len(data.train) // cfg.batch_size)
    total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    if cfg.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=total_steps,
                                                        pct_start=0.25)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    result = TrainResult("ok", 0.0, None, 0, 0, [], [], 0.0, 0.0, 0.0, str(device))
    start_epoch = 0
    if resume and checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        result = state["result"]
        start_epoch = result.epochs
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = tqdm(total=total_steps, initial=result.steps, disable=not progress, leave=False,
               unit="step", dynamic_ncols=True)
    images = 0
    clock = time.perf_counter()
    model.train()
    for epoch in range(start_epoch, epochs):
        losses = torch.zeros((), device=device)
        seen = 0
        for x, y in batches(data.train, cfg.batch_size, shuffle=True, generator=generator,
                            drop_last=True):
            if result.steps >= total_steps:
                break
            x = data.normalise(augment(x, data.info.augment, generator))
            with _autocast(device, cfg.amp):
                loss = F.cross_entropy(model(x.contiguous(memory_format=memory_format)), y,
                                       label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses += loss.detach()
            seen += 1
            images += len(y)
            result.steps += 1
            bar.update()
            # Syncing every step would stall the GPU; a diverged run is caught within 20 steps.
            if result.steps % 20 == 0 and not torch.isfinite(losses):
                break
        mean_loss = (losses / max(1, seen)).item()
        result.loss_curve.append(mean_loss)
        result.epochs = epoch + 1
        if not math.isfinite(mean_loss):
            result.status = "diverged"
            result.message = f"training loss became {mean_loss} in epoch {epoch + 1}"
            break
        result.val_accuracy = evaluate(model, data, "val", amp=cfg.amp)
        result.val_curve.append(result.val_accuracy)
        bar.set_postfix(epoch=epoch + 1, loss=f"{mean_loss:.3f}", val=f"{result.val_accuracy:.3f}")
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                        "torch_rng": torch.get_rng_state(), "result": result},
                       checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
        if on_epoch is not None:
            on_epoch(epoch + 1, result.val_accuracy)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    bar.close()
    elapsed = time.perf_counter() - clock
    result.train_seconds += elapsed
    result.images_per_second = images / elapsed if elapsed > 0 else 0.0
    result.peak_memory_mb = _peak_memory_mb(device)
    if eval_test and data.test is not None and result.status == "ok":
        result.test_accuracy = evaluate(model, data, "test", amp=cfg.amp)
    return result


def train_spec(spec: "PatternSpec", data_cfg: DataConfig, cfg: TrainConfig, *,
               eval_test: bool = False, progress: bool = True, on_epoch: EpochCallback | None = None,
               checkpoint: Path | None = None, resume: bool = False,
               ) -> tuple["PatternSpec", nn.Module, TrainResult]:
    """Train a spec's network on a dataset; the spec's input shape and class count follow the
    dataset (the returned spec says which were used)."""
    info = data_cfg.info
    if (spec.arch.input_shape, spec.arch.num_classes) != (info.input_shape, info.num_classes):
        spec = spec.with_data(info.input_shape, info.num_classes)
    device = resolve_device(cfg.device)
    data = data_cfg.load(device, with_test=eval_test)
    model, result = fit(spec.pattern, spec.arch, data, cfg, on_epoch=on_epoch,
                        eval_test=eval_test, progress=progress, checkpoint=checkpoint,
                        resume=resume)
    return spec, model, result
