"""Shared measurements for the benchmarks: activation memory and training-step time."""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def activation_mb(model: nn.Module, x: torch.Tensor) -> float:
    """MiB of tensors autograd keeps for backward in one forward pass (unique storages).

    Device-independent, so CPU runs measure the same thing a GPU allocator would hold."""
    seen: dict[int, int] = {}
    params = {p.data_ptr() for p in model.parameters()}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values()) / 2 ** 20


def step_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int,
                 warmup: int = 2, amp: bool = False) -> float:
    """Median seconds of one SGD training step (forward, backward, update); ``amp``: in the
    precision and memory format skipnas' trainer uses."""
    from nas.engine.train import amp_context, best_memory_format

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if amp:
        fmt = best_memory_format(x.device, amp)
        model, x = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
    times = []
    for i in range(warmup + iters):
        if x.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with amp_context(x.device, amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def interleaved_step_seconds(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                             rounds: int = 5, iters: int = 3) -> dict[str, float]:
    """Median step time of each model, measured in alternating rounds so that warm-up, thermal
    and scheduler drift hit every model alike."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(step_seconds(model, x, y, iters, warmup=1))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def cuda_peak_mb(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Peak CUDA memory of one training step, or None on CPU."""
    if not x.is_cuda:
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2 ** 20
