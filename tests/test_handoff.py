"""The winner handed over for full training: a spec scaled for its target (growth, stem, data,
depth), its weights out as a plain state_dict and a torch.export program, and a run that a
Ctrl-C in its first epoch does not lose."""
import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nas
from nas import interrupts
from nas.cli import main
from nas.engine.model import count_params
from nas.engine.run_config import ArchConfig, DataConfig, TrainConfig
from nas.engine.spec import PatternSpec, check_measured, make_spec
from nas.engine.stems import STEMS, default_stem
from nas.engine.train import read_checkpoint, train
from nas.errors import SpecError
from search_spaces import Pattern, make_space, template_pattern
from search_spaces.spaces import offsets_pattern_block, sample_patterns
from tests.testing import ENV, image_folder, write_cifar

ROOT = Path(__file__).resolve().parents[1]

SEARCHED = ArchConfig(growth=4, bottleneck=False, stem_stride=4, input_shape=(1, 28, 28))


def searched(pattern, **origin):
    """A spec as a quickstart search exports it: growth 4, a stride-4 stem, 28x28 grayscale."""
    return make_spec(pattern, SEARCHED, {"study": "quick", "trial": 7, "accuracy": 0.66,
                                         **origin})


@pytest.fixture(scope="module")
def source():
    return searched(template_pattern("log", [5, 5]))


def test_a_scaled_spec_builds_is_measured_and_names_its_source(source, tmp_path):
    scaled = source.scaled(growth=8, stem="cifar", in_channels=3, input_size=32,
                           num_classes=100)
    assert scaled.pattern == source.pattern
    assert (scaled.arch.growth, scaled.arch.stem, scaled.arch.stem_stride) == (8, "cifar", 1)
    assert (scaled.arch.input_shape, scaled.arch.num_classes) == ((3, 32, 32), 100)
    assert scaled.metrics == make_spec(scaled.pattern, scaled.arch).metrics
    assert scaled.metrics["params"] > source.metrics["params"]
    assert scaled.origin["scaled_from"] == source.digest != scaled.digest
    assert scaled.origin["source"] == source.origin
    assert scaled.origin["changed"]["growth"] == {"from": 4, "to": 8}
    assert scaled.origin["changed"]["stem"] == {"from": "conv", "to": "cifar"}
    model = nas.build_model(scaled)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    assert count_params(model) == scaled.metrics["params"]
    loaded = PatternSpec.load(scaled.save(tmp_path / "scaled.json"))
    assert loaded == scaled and loaded.digest == scaled.digest
    check_measured(loaded)


def test_build_model_scales_as_the_spec_does(source):
    """`nas.build_model(spec, num_classes=100)` was a TypeError."""
    model = nas.build_model(source, num_classes=100)
    assert model.classifier.out_features == 100
    spec = source.scaled(num_classes=100)
    assert count_params(model) == spec.metrics["params"]
    assert source.scaled() is source and source.scaled(growth=4) is source


def test_the_stem_follows_the_input_size_unless_named(source):
    assert [default_stem(s) for s in ((1, 28, 28), (1, 16, 16), (3, 32, 32), (3, 224, 224))] \
        == ["mnist", "mnist", "cifar", "imagenet"]
    assert source.scaled(in_channels=3, input_size=224).arch.stem == "imagenet"
    assert source.scaled(growth=8).arch.stem == "mnist"  # scaled for its own 28x28
    assert source.scaled(growth=8, stem="conv").arch.stem_stride == 4  # a named stem kept
    with pytest.raises(SpecError, match="stem_stride: only the 'conv' stem takes a stride"):
        source.scaled(stem="cifar", stem_stride=2)


@pytest.mark.parametrize("stem, shape, side", [
    ("conv", (1, 28, 28), 7), ("mnist", (1, 28, 28), 14), ("cifar", (3, 32, 32), 32),
    ("imagenet", (3, 224, 224), 56),
])
def test_each_stem_gives_the_first_block_its_resolution(source, stem, shape, side):
    model = nas.build_model(source, stem=stem, in_channels=shape[0], input_size=shape[1:],
                            growth=2)
    width = model.arch.stem_width
    assert model.stem(torch.zeros(1, *shape)).shape == (1, width, side, side)
    assert side == shape[1] // STEMS[stem].reduction(model.arch)


def test_a_spec_from_before_named_stems_loads_as_the_conv_stem(source):
    data = json.loads(source.to_json())
    del data["architecture"]["stem"]  # as every spec exported before stems had names
    old = PatternSpec.from_dict(data)
    assert old.arch == source.arch and old.arch.stem == "conv"
    check_measured(old)


def test_a_hand_edited_scaled_spec_is_refused(source, tmp_path):
    scaled = source.scaled(growth=8)
    data = json.loads(scaled.to_json())
    data["architecture"]["growth"] = 16
    with pytest.raises(SpecError, match="metrics.params: .* does not match the network"):
        check_measured(PatternSpec.from_dict(data), "edited.json")


def offsets_pattern(layers, offsets):
    return Pattern(offsets_pattern_block(L, offsets) for L in layers)


@pytest.mark.parametrize("pattern, deeper, rule", [
    (template_pattern("log", [5, 5]), template_pattern("log", [9, 9, 9]), "template log"),
    (template_pattern("nearest", [6]), template_pattern("nearest", [20]), "template nearest"),
    (template_pattern("nearest", [6], 2), template_pattern("nearest", [20], 2), "K=2"),
    (template_pattern("log", [3, 3], style="v1"), template_pattern("log", [6, 6], style="v1"),
     "template log (v1)"),
    (offsets_pattern([8], {1, 3, 4}), offsets_pattern([9, 9, 9], {1, 3, 4}), "offsets {1, 3, 4}"),
])
def test_a_rule_made_pattern_is_re_derived_at_other_depths(pattern, deeper, rule):
    spec = searched(pattern)
    scaled = spec.scaled(layers=list(deeper.stages))
    assert scaled.pattern == deeper
    change = scaled.origin["changed"]
    assert change["layers"] == {"from": list(pattern.stages), "to": list(deeper.stages)}
    assert change["pattern"]["from"] == pattern.hash and change["pattern"]["to"] == deeper.hash
    assert rule in change["pattern"]["rule"]
    assert scaled.metrics["connections"] == deeper.connections


def test_a_searched_pattern_keeps_its_rule_at_other_depths():
    """Patterns a search drew (no template named in their origin): a `templates` space one at
    log's connection count stays at log's count; an `offsets` one keeps its offsets."""
    [chosen] = sample_patterns(make_space("templates", [12], templates=["nearest"]), 1)
    deeper = searched(chosen).scaled(layers=[24]).pattern
    assert deeper.connections == template_pattern("log", [24]).connections != chosen.connections
    [drawn] = sample_patterns(make_space("offsets", [12]), 1, seed=3)
    offsets = {i - j for i, row in enumerate(drawn.blocks[0].inputs, 1) for j in row}
    assert searched(drawn).scaled(layers=[24]).pattern == offsets_pattern([24], offsets)


def test_a_free_pattern_at_another_depth_is_refused_in_one_line(tmp_path):
    [free] = sample_patterns(make_space("free", [8]), 1)
    spec = searched(free)
    with pytest.raises(SpecError, match=r"layers: pattern \w+ follows no template or offset "
                                        r"rule .* keep its layers \[8\]") as e:
        spec.scaled(layers=[16])
    assert "\n" not in str(e.value)
    assert spec.scaled(layers=[8], growth=8).pattern == free  # its own depth: fine
    path = spec.save(tmp_path / "free.json")
    assert main(["train", str(path), "--layers", "16", "--dataset", "synthetic",
                 "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


def cli_train(spec_path, out, *extra):
    """100 steps of 80 a epoch on the CPU (whose kernels are deterministic: exact weights)."""
    return main(["train", str(spec_path), "--dataset", "synthetic", "--val-size", "512",
                 "--batch-size", "32", "--steps", "100", "--growth", "4", "--device", "cpu",
                 "-q", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    return searched(template_pattern("log", [4])).save(tmp_path_factory.mktemp("s") / "s.json")


@pytest.fixture(scope="module")
def uninterrupted(spec_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert cli_train(spec_file, out) == 0
    return out


def plain(spec_dir):
    """The run's network from its files with plain torch: no skipnas state, no checkpoint."""
    model = nas.build_model(PatternSpec.load(spec_dir / "spec.json"))
    model.load_state_dict(torch.load(spec_dir / "weights.pt", weights_only=True))
    return model.eval()


def test_train_writes_weights_that_load_into_the_spec_it_writes(uninterrupted):
    model = plain(uninterrupted)
    trained = nas.build_model(uninterrupted / "spec.json")
    trained.load_state_dict(read_checkpoint(uninterrupted / "checkpoint.pt", "cpu")["model"])
    x = torch.randn(5, *model.arch.input_shape)
    assert torch.equal(model(x), trained.eval()(x))
    spec = PatternSpec.load(uninterrupted / "spec.json")
    assert spec.arch.input_shape == DataConfig("synthetic").info.input_shape
    assert spec.origin["scaled_from"] and spec.origin["dataset"] == "synthetic"
    data = DataConfig("synthetic", val_size=512).load()
    assert spec.origin["normalise"] == {"mean": data.mean.flatten().tolist(),
                                        "std": data.std.flatten().tolist()}


@pytest.mark.slow
def test_the_exported_program_runs_without_skipnas(spec_file, uninterrupted, tmp_path):
    """It takes images in 0..1 and normalises them as training did."""
    run = tmp_path / "run"
    assert cli_train(spec_file, run, "--export", "pt2") == 0
    x = torch.rand(3, *plain(run).arch.input_shape)
    torch.save(x, tmp_path / "x.pt")
    code = ("import sys, torch; program = torch.export.load(sys.argv[1]); "
            "torch.save(program.module()(torch.load(sys.argv[2])), sys.argv[3]); "
            "assert 'nas' not in sys.modules")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(run / "model.pt2"),
                          str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr
    stats = PatternSpec.load(run / "spec.json").origin["normalise"]
    mean, std = (torch.tensor(stats[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        expected = plain(uninterrupted)((x - mean) / std)  # the same run, without --export
    assert torch.allclose(torch.load(tmp_path / "y.pt"), expected, atol=1e-5)


@pytest.fixture
def ctrl_c_heard():
    """SIGINT as a terminal's foreground process hears it (a background job ignores it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_at_step_10_of_the_first_epoch_resumes_at_step_10_exactly(
        spec_file, uninterrupted, tmp_path, monkeypatch, capsys, ctrl_c_heard):
    calls, check = [], interrupts.check

    def ctrl_c_before_batch_11():
        calls.append(1)
        if len(calls) == 11:  # 10 steps trained: the terminal's Ctrl-C arrives
            signal.raise_signal(signal.SIGINT)
        check()

    monkeypatch.setattr(interrupts, "check", ctrl_c_before_batch_11)
    assert cli_train(spec_file, tmp_path) == 128 + signal.SIGINT
    assert "the same command with --resume goes on" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "checkpoint.pt", "cpu")["result"]["steps"] == 10
    assert not (tmp_path / "weights.pt").exists()
    monkeypatch.undo()
    assert cli_train(spec_file, tmp_path, "--resume") == 0
    printed = capsys.readouterr()
    assert f"resuming {tmp_path / 'checkpoint.pt'}: epoch 1, step 10 of 80 (10 of 100 steps " \
           f"done)" in printed.err
    assert f"weights: {tmp_path / 'weights.pt'}" in printed.out.splitlines()
    resumed, whole = (torch.load(d / "weights.pt", weights_only=True)
                      for d in (tmp_path, uninterrupted))
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_a_crash_goes_on_from_the_last_periodic_checkpoint(tmp_path):
    """No Ctrl-C to save at (a killed process): the run goes on from its last checkpoint,
    taken every N steps, and ends where an unbroken run ends."""
    data = DataConfig("synthetic", val_size=512).load()
    spec = make_spec(template_pattern("log", 4), ArchConfig(growth=4, bottleneck=False,
                                                            input_shape=(1, 16, 16)))
    cfg = TrainConfig(steps=60, batch_size=64)
    whole = train(spec, data, cfg, progress=False)
    seen = []

    class Crash(Exception):
        pass

    def crash_at_step_25():
        seen.append(1)
        if len(seen) == 26:
            raise Crash

    with pytest.raises(Crash):
        train(spec, data, cfg, progress=False, checkpoint=tmp_path / "c.pt",
              checkpoint_every=10, on_batch=crash_at_step_25)
    points = []
    resumed = train(spec, data, cfg, progress=False, checkpoint=tmp_path / "c.pt",
                    checkpoint_every=10, resume=True, on_resume=points.append)
    assert [(p.epoch, p.step, p.steps) for p in points] == [(1, 20, 20)]
    assert resumed.result.loss_curve == whole.result.loss_curve
    assert resumed.result.val_curve == whole.result.val_curve
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values()):
        assert torch.equal(a, b)


def readme_training_commands() -> list[list[str]]:
    """The `skipnas train` commands of the README's full-training section, as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Full training and data"):]
    block = section[section.index("```bash") + 7:section.index("```", section.index("```bash") + 7)]
    lines = [line for line in block.replace("\\\n", " ").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    commands = [shlex.split(line) for line in lines]
    assert commands and all(c[:2] == ["skipnas", "train"] for c in commands)
    return commands


@pytest.mark.slow
def test_the_readmes_full_training_examples_run_as_written(tmp_path, monkeypatch):
    """Each on data of its shape (fake CIFAR-10 batches; a 3-channel, 100-class image folder
    of two sizes), cut to 2 steps: the written weights load into a fresh network of the spec
    the run wrote, with plain torch."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKIPNAS_DATA", str(tmp_path / "data"))
    write_cifar(tmp_path / "data" / "cifar10", n=40)
    image_folder(tmp_path / "my_images", classes=100, per_class=2, size=12, channels=3)
    image_folder(tmp_path / "more", classes=100, per_class=1, size=20, channels=3, seed=1)
    for image in (tmp_path / "more").rglob("*.*"):  # a second size: --image-size resizes
        image.rename(tmp_path / "my_images" / image.parent.name / f"big{image.name}")
    (tmp_path / "studies").mkdir()
    searched(template_pattern("log", [4])).save(tmp_path / "studies" / "quickstart_best.json")
    shapes = []
    for command in readme_training_commands():
        assert main([*command[1:], "--steps", "2", "--batch-size", "8", "-q"]) == 0
        out = Path(command[command.index("--out") + 1])
        spec = PatternSpec.load(out / "spec.json")
        model = nas.build_model(spec)
        model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
        shapes.append((spec.arch.input_shape, spec.arch.num_classes, spec.arch.growth))
    assert shapes == [((3, 32, 32), 10, 24), ((3, 32, 32), 100, 24)]
