"""Zero-cost proxies: scores of an untrained network computed at initialisation on one batch,
as the papers define them, with the conventions of the zero-cost-nas reference code
(SamsungLabs/zero-cost-nas, foresight/pruners/measures): the network in training mode (batch
norm on the batch's statistics), cross-entropy loss, and the per-weight scores summed over the
weights of convolutions and linear layers only (nn.Conv2d, nn.Linear; no biases, no batch
norm). Each is oriented as its paper ranks: a higher score predicts a better network."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from search_spaces import Registry

from ..errors import UserError

if TYPE_CHECKING:
    from .spec import PatternSpec

SCORED_LAYERS = (nn.Conv2d, nn.Linear)  # the layers whose weights are scored (as the reference)


def scored_weights(model: nn.Module) -> Iterator[torch.Tensor]:
    """The weights of every convolution and linear layer, in module order."""
    for module in model.modules():
        if isinstance(module, SCORED_LAYERS):
            yield module.weight


def _loss_gradients(model: nn.Module, images: torch.Tensor,
                    labels: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, dL/dweight) of every scored weight, L the mean cross-entropy of the batch."""
    weights = list(scored_weights(model))
    loss = F.cross_entropy(model(images), labels)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w.detach(), torch.zeros_like(w) if g is None else g) for w, g in zip(weights, grads)]


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """SNIP (Lee, Ajanthan, Torr, "SNIP: Single-shot Network Pruning based on Connection
    Sensitivity", ICLR 2019), summed over the network as in Abdelfattah et al. 2021: the sum over
    weights of |dL/dw * w| (the connection sensitivity |dL/dc| at the mask c = 1)."""
    return float(sum((g * w).abs().sum() for w, g in _loss_gradients(model, images, labels)))


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """grad_norm (Abdelfattah, Mehrotra, Dudziak, Lane, "Zero-Cost Proxies for Lightweight NAS",
    ICLR 2021): the sum over layers of the L2 (Frobenius) norm of the loss gradient of each
    layer's weight."""
    return float(sum(g.norm() for _, g in _loss_gradients(model, images, labels)))


class _PassThrough(nn.Module):
    """An identity that returns a copy, so an in-place ReLU after it (as DenseNet's) never
    writes into the tensor it was given."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def _without_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose batch norms pass their input through unchanged."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, _PassThrough())
    return model


def synflow(model: nn.Module, images: torch.Tensor) -> float:
    """SynFlow (Tanaka, Kunin, Yamins, Ganguli, "Pruning neural networks without any data by
    iteratively conserving synaptic flow", NeurIPS 2020), as Abdelfattah et al. 2021 score a
    network: on a float64 copy whose parameters are replaced by their absolute values and whose
    batch norms do nothing, R = the sum of the output for one all-ones image of the batch's
    shape, and the score is the sum over weights of |dR/dw * w|. ``model`` is left unchanged;
    ``images`` gives only the shape (one image, as the reference: a batch of n ones-images
    scales the score by n)."""
    net = _without_batch_norm(model).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64, device=images.device)
    weights = list(scored_weights(net))
    grads = torch.autograd.grad(net(ones).sum(), weights, allow_unused=True)
    return float(sum((g * w.detach()).abs().sum() for w, g in zip(weights, grads)
                     if g is not None))


_RELUS = frozenset({F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu,
                    torch.Tensor.relu_})


class _ReluCodes(TorchFunctionMode):
    """Sees every ReLU of a forward pass (modules, functional and in-place calls alike) and adds
    its binary codes to the NASWOT kernel: K += c c^T + (1 - c)(1 - c)^T per image pair."""

    def __init__(self, batch: int, device: torch.device):
        super().__init__()
        self.kernel = torch.zeros((batch, batch), dtype=torch.float64, device=device)
        self.units = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _RELUS:  # relu(x) > 0 exactly where x > 0: the code of the ReLU's input
            codes = (out > 0).reshape(out.shape[0], -1).to(torch.float64)
            self.kernel += codes @ codes.T + (1 - codes) @ (1 - codes).T
            self.units += codes.shape[1]
        return out


def naswot_kernel(model: nn.Module, images: torch.Tensor) -> tuple[np.ndarray, int]:
    """(K, N_A): the NASWOT kernel of the batch, K[i, j] = N_A - (Hamming distance between
    the binary ReLU codes of images i and j), and N_A, the network's ReLU units per image."""
    with torch.no_grad(), _ReluCodes(len(images), images.device) as codes:
        model(images)
    return codes.kernel.cpu().numpy(), codes.units


def naswot(model: nn.Module, images: torch.Tensor) -> float:
    """NASWOT (Mellor, Turner, Storkey, Crowley, "Neural Architecture Search without Training",
    ICML 2021): log|det K| of :func:`naswot_kernel` (the authors' slogdet), -inf when two images
    share their codes."""
    kernel, _ = naswot_kernel(model, images)
    return float(np.linalg.slogdet(kernel)[1])


JACOB_COV_K = 1e-5  # the reference code's regulariser of the eigenvalues


def jacob_cov(model: nn.Module, images: torch.Tensor) -> float:
    """jacob_cov (Mellor, Turner, Storkey, Crowley, "Neural Architecture Search without
    Training", arXiv:2006.04647 v1, 2020): the correlation matrix S of the per-image Jacobians
    d(sum of the outputs)/d(image), scored as the zero-cost-nas code does:
    -sum_i (log(v_i + k) + 1 / (v_i + k)) over S's eigenvalues v, k = 1e-5. NaN when an image's
    Jacobian is constant (its correlations are undefined)."""
    x = images.detach().clone().requires_grad_(True)
    (jacobian,) = torch.autograd.grad(model(x).sum(), x)
    rows = jacobian.reshape(len(x), -1).double().cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant row: NaN, checked next
        corr = np.corrcoef(rows)
    if not np.isfinite(corr).all():
        return float("nan")
    v = np.linalg.eigvalsh(corr) + JACOB_COV_K
    return float(-np.sum(np.log(v) + 1 / v))


ProxyFn = Callable[["PatternSpec", nn.Module, torch.Tensor, torch.Tensor], float]

# Every proxy by name: (spec, initialised model in training mode, normalised images, labels).
PROXIES: Registry[ProxyFn] = Registry("zero-cost proxy", UserError)
PROXIES.add("snip", lambda spec, model, x, y: snip(model, x, y))
PROXIES.add("grad_norm", lambda spec, model, x, y: grad_norm(model, x, y))
PROXIES.add("synflow", lambda spec, model, x, y: synflow(model, x))
PROXIES.add("naswot", lambda spec, model, x, y: naswot(model, x))
PROXIES.add("jacob_cov", lambda spec, model, x, y: jacob_cov(model, x))
PROXIES.add("params", lambda spec, model, x, y: float(spec.metrics["params"]))
PROXIES.add("flops", lambda spec, model, x, y: float(spec.metrics["flops"]))


@dataclass(frozen=True)
class Measured:
    """One proxy's score of one network and the seconds it took."""
    score: float
    seconds: float


def initialised(spec: "PatternSpec", seed: int, device: torch.device) -> nn.Module:
    """The network of ``spec`` initialised from ``seed`` (the caller's random state is left as
    it was), on ``device``, in training mode."""
    from .model import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec)
    return model.to(device).train()


def measure_proxies(spec: "PatternSpec", images: torch.Tensor, labels: torch.Tensor,
                    seed: int = 0, names: tuple[str, ...] | None = None) -> dict[str, Measured]:
    """Every proxy (or those named) of the network of ``spec`` initialised from ``seed``, on one
    batch of normalised ``images`` (N, C, H, W) and their ``labels``; each timed. Every proxy
    sees the same initial weights."""
    fns = [(name, PROXIES[name]) for name in (names or tuple(PROXIES))]
    model = initialised(spec, seed, images.device)
    out = {}
    for name, fn in fns:
        clock = time.perf_counter()
        score = fn(spec, model, images, labels)
        out[name] = Measured(score, time.perf_counter() - clock)
    return out


def proxy_scores(spec: "PatternSpec", batch_images: torch.Tensor, batch_labels: torch.Tensor,
                 seed: int = 0) -> dict[str, float]:
    """Every proxy's score (by name, in :data:`PROXIES` order) of the network of ``spec``
    initialised from ``seed``, on one batch of normalised images and their labels."""
    return {name: m.score for name, m in
            measure_proxies(spec, batch_images, batch_labels, seed).items()}
