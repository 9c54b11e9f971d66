"""What full training hands over, in one folder: the spec of the network trained (with the
normalisation its inputs had), its weights as a plain state_dict (``torch.load(path,
weights_only=True)`` into ``build_model(spec)``), and on request a ``torch.export`` program
that runs without skipnas."""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .train import write_atomically

if TYPE_CHECKING:
    from .loader import DataBundle
    from .spec import PatternSpec


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run."""

    path: Path

    @property
    def spec(self) -> Path:
        return self.path / "spec.json"

    @property
    def weights(self) -> Path:
        return self.path / "weights.pt"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def program(self) -> Path:
        return self.path / "model.pt2"

    @classmethod
    def default(cls, spec: "PatternSpec", dataset: str, seed: int) -> "RunFolder":
        """Where training a spec file keeps its run unless told: named by the pattern, the
        network's growth and stem, the dataset and the seed, so that the same command finds
        its checkpoint again and a scaled network does not share it."""
        arch = spec.arch
        return cls(Path("runs") / f"{spec.hash}-g{arch.growth}-{arch.stem}-{dataset}-seed{seed}")


@dataclass(frozen=True)
class Normalisation:
    """What the network's inputs were: pixels in 0..1, minus ``mean``, over ``std`` (per
    channel, of the training split)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, data: "DataBundle") -> "Normalisation":
        return cls(tuple(data.mean.flatten().tolist()), tuple(data.std.flatten().tolist()))

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


def as_trained(spec: "PatternSpec", data: "DataBundle") -> "PatternSpec":
    """``spec`` with what it was trained on in its origin: the dataset, and the normalisation
    that its weights expect of their inputs."""
    return replace(spec, origin={**spec.origin, "dataset": data.info.name,
                                 "normalise": Normalisation.of(data).to_dict()})


def save_weights(model: nn.Module, path: Path) -> Path:
    """The model's state_dict, on the CPU in the default memory format, written atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomically(path, lambda f: torch.save(state, f), "weights")
    return path


class Normalised(nn.Module):
    """``model`` on images in 0..1: normalised first, as in training."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, normalisation: Normalisation):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(normalisation.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(normalisation.std).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


def export_program(model: nn.Module, input_shape: tuple[int, int, int],
                   normalisation: Normalisation, path: Path) -> Path:
    """``model`` in inference mode, normalising its inputs, as a ``torch.export`` program for
    CPU float images in 0..1 of ``input_shape``, any batch size:
    ``torch.export.load(path).module()(images)`` gives the logits."""
    inference = copy.deepcopy(model).cpu().float().eval()
    inference.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    example = torch.zeros(2, *input_shape)
    with torch.no_grad():
        program = torch.export.export(Normalised(inference, normalisation), (example,),
                                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    write_atomically(path, lambda f: torch.export.save(program, f), "program")
    return path
