"""Your own Optuna study and training loop over skipnas' search space.

A plain `optuna.create_study`; the objective draws a skip-connection pattern with
`nas.suggest_pattern`, builds its network, trains it with a plain torch loop and stores what it
trained with `nas.record_trial`. `skipnas analyze`, `report`, `dashboard` and `export` then read
the study like one of skipnas' own (docs/own_loop.md).

    python examples/own_loop.py                   # Fashion-MNIST, 10 trials: ~45 s on 2 cores
    python examples/own_loop.py --dataset synthetic --trials 6 --steps 10
"""
from __future__ import annotations

import argparse
import time

import optuna
import torch
import torch.nn.functional as F

import nas
from nas.engine import ArchConfig, DataBundle, load_data


def accuracy(model: torch.nn.Module, data: DataBundle, batch_size: int = 500) -> float:
    """Accuracy on the validation split."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(data.val), batch_size):
            images = data.normalise(data.val.images[i:i + batch_size])
            correct += int((model(images).argmax(1) == data.val.labels[i:i + batch_size]).sum())
    model.train()
    return correct / len(data.val)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="own_loop", help="study name")
    p.add_argument("--storage", help="storage URL (default: sqlite:///NAME.db here)")
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "synthetic"))
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--layers", type=int, default=8, help="layers of the one dense block")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=30, help="optimiser steps per epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-size", type=int, default=4096)
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="the sampler's and the training's seed")
    args = p.parse_args()
    storage = args.storage or f"sqlite:///{args.name}.db"

    data = load_data(args.dataset, train_size=args.train_size, val_size=args.val_size)
    # Small and quick: the stem's stride 2 trains 5x faster on the CPU than full resolution.
    arch = ArchConfig(growth=8, bottleneck=False, stem_stride=2,
                      input_shape=data.info.input_shape, num_classes=data.info.num_classes)
    # A study config's [search_space] table: offset sets at Log-DenseNet's connection count.
    space = {"name": "offsets", "layers": [args.layers]}

    def objective(trial: optuna.Trial) -> float:
        pattern = nas.suggest_pattern(trial, space)
        spec = nas.make_spec(pattern, arch)      # the network's params and FLOPs, measured
        torch.manual_seed(args.seed)
        model = nas.build_model(spec)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        batches = torch.Generator().manual_seed(args.seed)
        curve, losses, clock = [], [], time.perf_counter()
        for epoch in range(args.epochs):
            for _ in range(args.steps):
                i = torch.randint(len(data.train), (args.batch_size,), generator=batches)
                loss = F.cross_entropy(model(data.normalise(data.train.images[i])),
                                       data.train.labels[i])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            curve.append(accuracy(model, data))
            losses.append(loss.item())
            trial.report(curve[-1], epoch)
        nas.record_trial(trial, spec, seed=args.seed, train_seconds=time.perf_counter() - clock,
                         val_curve=curve, loss_curve=losses, device="cpu")
        return curve[-1]

    study = optuna.create_study(study_name=args.name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed),
                                load_if_exists=True)
    study.optimize(objective, n_trials=args.trials)
    print(f"best accuracy {study.best_value:.4f} (trial {study.best_trial.number}); now:")
    for command in ("analyze", "report", "export", "dashboard"):
        print(f"  skipnas {command} {args.name} --storage {storage}")


if __name__ == "__main__":
    main()
