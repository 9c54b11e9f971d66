"""The front door, fuzzed: study TOML, pattern spec JSON and command-line arguments. Every bad
input is one line naming the file (or command), the key and the problem, exit code 2, no
traceback, and nothing is written."""
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.cli import main
from nas.engine.run_config import ArchConfig
from nas.engine.spec import PatternSpec, make_spec
from nas.errors import SpecError
from search_spaces import template_pattern

# Derandomized: CI replays the same examples every run (explore with --hypothesis-seed).
FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

BASE = {
    "name": "fuzz", "trials": 2, "seed": 0, "storage": "sqlite:///fuzz.db",
    "search_space": {"name": "offsets", "layers": [6], "style": "per_block"},
    "baselines": {"templates": ["log"], "seeds": [0]},
    "data": {"name": "synthetic", "train_size": 256, "val_size": 128, "split_seed": 0},
    "architecture": {"growth": 4, "bottleneck": False, "stem_stride": 1},
    "training": {"epochs": 1, "batch_size": 32, "lr": 0.1, "device": "cpu", "seed": 0},
    "sampler": {"name": "random"},
    "pruner": {"name": "none"},
}

# Fresh objects every draw: a shared (st.just) dict could end up containing itself.
weird = st.one_of(
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.floats(allow_nan=True),
    st.text(max_size=12), st.booleans(), st.lists(st.integers(-5, 10 ** 6), max_size=4),
    st.builds(list), st.builds(dict), st.fixed_dictionaries({"x": st.integers(0, 3)}))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(doc: dict) -> str:
    top = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{k}]\n" + "\n".join(f"{kk} = {toml_value(vv)}" for kk, vv in v.items())
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


@st.composite
def mutated_configs(draw):
    doc = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(sorted(doc)))
        action = draw(st.sampled_from(["set", "drop", "unknown", "drop_section"]))
        if action == "drop_section" or not isinstance(doc[section], dict):
            if action in ("set",) and not isinstance(doc[section], dict):
                doc[section] = draw(weird)
            elif action == "unknown":
                doc[draw(st.sampled_from(["bogus", "extra"]))] = draw(weird)
            else:
                doc.pop(section)
            continue
        table = doc[section]
        if action == "unknown":
            table[draw(st.sampled_from(["bogus", "epoch", "lyers"]))] = draw(weird)
        elif table:
            key = draw(st.sampled_from(sorted(table)))
            if action == "drop":
                table.pop(key)
            else:
                table[key] = draw(weird)
    return doc


def run(argv, capsys):
    """(exit code, stdout, stderr) of the CLI run in this process."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_line(code, err, *names):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("skipnas: error: ") and "Traceback" not in err
    assert all(n in lines[0] for n in names), (names, lines[0])


@FUZZ
@given(doc=mutated_configs())
def test_fuzzed_study_configs(doc, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc))
    code, _, err = run(["study", "check", str(path)], capsys)
    if code != 0:
        assert_one_clear_line(code, err, str(path))
        # The problem names a key ("section.key: ..." or "key: ...") or the file as a whole.
        detail = err.split(f"{path}: ", 1)[1]
        assert ":" in detail or "TOML" in detail or "UTF-8" in detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]  # nothing written


@pytest.mark.parametrize("text", [
    b"\xff\xfe not utf-8", b'name = "x"\n[search_space]\nlayers = [100000]',
    b'name = "x"\n[architecture]\ngrowth = 100000000', b'name = "x"\ntrials = 1000001',
    b'name = "../evil"', b'name = "x"\n[data]\nval_size = inf',
    b'name = "x"\n[data]\nsplit_seed = -1', b'name = "x"\n[training]\ndevice = "foo"',
    # F9: nesting, a 5001-digit integer, an absurd heartbeat, uncapped baseline seeds
    pytest.param(b'name = "x"\ny = ' + b"[" * 100000 + b"]" * 100000, id="nested-100000"),
    pytest.param(b'name = "x"\nseed = 1' + b"0" * 5000, id="5001-digit-seed"),
    b'name = "x"\nheartbeat_seconds = 100000000000000000000',
    pytest.param(b'name = "x"\n[baselines]\ntemplates = ["log", "dense", "chain"]\nseeds = ['
                 + ",".join(map(str, range(200000))).encode() + b"]", id="200000-seeds"),
])
def test_bad_configs_never_start_a_study(text, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.toml"
    path.write_bytes(text)
    code, _, err = run(["study", "start", str(path), "-q"], capsys)
    assert_one_clear_line(code, err, str(path))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["c.toml"]  # no storage, no studies/


@pytest.fixture(scope="module")
def spec_dict():
    spec = make_spec(template_pattern("log", [4, 3]), ArchConfig(growth=4, input_shape=(1, 16, 16)))
    return json.loads(spec.to_json())


@st.composite
def mutated_specs(draw, base):
    data = json.loads(json.dumps(base))
    kind = draw(st.sampled_from(["edge", "hash", "field", "type", "layers", "drop", "metric"]))
    block = draw(st.integers(0, len(data["blocks"]) - 1))
    rows = data["blocks"][block]["inputs"]
    if kind == "edge":  # forward, self, negative or duplicate reads
        i = draw(st.integers(0, len(rows) - 1))
        rows[i] = rows[i] + [draw(st.sampled_from([i + 1, i + 2, -1, rows[i][0]]))]
    elif kind == "hash":
        data["hash"] = draw(st.text(min_size=1, max_size=16))
    elif kind == "field":
        data[draw(st.sampled_from(["bogus", "Blocks"]))] = draw(weird)
    elif kind == "type":
        key = draw(st.sampled_from(["blocks", "architecture", "metrics", "origin", "style"]))
        data[key] = draw(weird)
    elif kind == "layers":  # a huge chain
        n = draw(st.integers(2001, 6000))
        data["blocks"] = [{"num_layers": n, "inputs": [[i] for i in range(n + 1)]}]
        data.pop("hash")
    elif kind == "drop":
        data.pop(draw(st.sampled_from(["blocks", "architecture", "metrics", "format_version"])))
    else:
        data["metrics"][draw(st.sampled_from(sorted(data["metrics"])))] = draw(weird)
    return data


@FUZZ
@given(data=st.data())
def test_fuzzed_specs(data, spec_dict, tmp_path):
    mutated = data.draw(mutated_specs(spec_dict))
    path = tmp_path / "s.json"
    path.write_text(json.dumps(mutated))
    try:
        loaded = PatternSpec.load(path)
    except SpecError as e:
        message = str(e)
        assert message.startswith(f"{path}: ") and "\n" not in message
        return
    assert loaded.to_dict()["hash"] == loaded.pattern.hash  # accepted: a consistent spec


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{}", "not UTF-8"), (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b"{", "not valid JSON"), (b"[]", "expected a JSON object"),
    pytest.param(b'{"format_version": 1' + b"0" * 5000 + b"}", "not a readable spec",
                 id="5001-digit-integer"),
])
def test_unreadable_spec_files(tmp_path, capsys, content, message):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    code, _, err = run(["train", str(path), "--dataset", "synthetic"], capsys)
    assert_one_clear_line(code, err, str(path), message)


FLAGS = {
    "--layers": st.lists(st.integers(-3, 3000), min_size=1, max_size=3).map(
        lambda v: [str(x) for x in v]),
    "--k": st.integers(-2, 40).map(lambda v: [str(v)]),
    "--style": st.sampled_from(["per_block", "v1", "v2", "v3"]).map(lambda v: [v]),
    "--growth": st.sampled_from(["0", "-4", "4", "1000000000", "x"]).map(lambda v: [v]),
    "--epochs": st.sampled_from(["0", "-1", "1", "x"]).map(lambda v: [v]),
    "--lr": st.sampled_from(["nan", "inf", "-1", "0.1"]).map(lambda v: [v]),
    "--val-size": st.sampled_from(["inf", "nan", "1.5", "0", "-1", "64"]).map(lambda v: [v]),
    "--split-seed": st.sampled_from(["-1", "99999999999999999999", "0"]).map(lambda v: [v]),
    "--seed": st.sampled_from(["-1", "99999999999999999999999", "3"]).map(lambda v: [v]),
    "--device": st.sampled_from(["foo", "cpu", "cuda:x"]).map(lambda v: [v]),
    "--batch-size": st.sampled_from(["0", "16", "-3"]).map(lambda v: [v]),
    "--compression": st.sampled_from(["nan", "0", "2", "0.5"]).map(lambda v: [v]),
    "--template": st.sampled_from(["log", "lgo", "nearest", "loglog"]).map(lambda v: [v]),
}


@FUZZ
@given(picked=st.dictionaries(st.sampled_from(sorted(FLAGS)), st.just(None), min_size=1,
                              max_size=4), data=st.data())
@pytest.mark.slow
def test_fuzzed_train_arguments(picked, data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--template", "log", "--dataset", "synthetic", "--steps", "1",
            "--train-size", "64", "--val-size", "32", "--growth", "2", "--layers", "3", "-q"]
    for flag in picked:
        argv += [flag, *data.draw(FLAGS[flag])]
    code, out, err = run(argv, capsys)
    if code != 0:
        assert_one_clear_line(code, err)
    assert not any(Path(tmp_path).iterdir())  # a brief run without --checkpoint writes nothing


@FUZZ
@given(layers=st.lists(st.integers(-2, 2500), min_size=1, max_size=3),
       k=st.one_of(st.none(), st.integers(-1, 50)),
       style=st.sampled_from(["per_block", "v1", "v2"]),
       budget=st.sampled_from(["authors", "exact"]))
@pytest.mark.slow
def test_fuzzed_templates_arguments(layers, k, style, budget, capsys):
    argv = ["templates", "--layers", *map(str, layers), "--style", style, "--budget", budget]
    argv += ["--k", str(k)] if k is not None else []
    if sum(max(L, 0) for L in layers) > 300 and all(L > 0 for L in layers) \
            and sum(layers) <= 2000:
        return  # valid but slow (N^2 distances for every template): covered elsewhere
    code, out, err = run(argv, capsys)
    if code != 0:
        assert_one_clear_line(code, err)
    else:
        assert out.splitlines()[0].startswith("templates for layers")


def test_port_in_use_is_one_line(tmp_path, capsys):
    import socket

    from nas.search.config import config_from_dict
    from nas.search.experiment.study import create_study

    url = f"sqlite:///{tmp_path}/d.db"
    create_study(config_from_dict({**json.loads(json.dumps(BASE)), "storage": url}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = run(["dashboard", "fuzz", "--storage", url, "--port", str(port)], capsys)
    assert_one_clear_line(code, err)
    assert "in use" in err or "Address" in err


@pytest.mark.parametrize("key, value", [("params", -5), ("params", 1e300), ("flops", 7)])
def test_a_spec_with_edited_params_or_flops_is_refused_before_training(
        spec_dict, tmp_path, capsys, monkeypatch, key, value):
    """F10: docs/failures_and_security.md promises edited metrics are refused; params and
    FLOPs were not checked (they need the network built), so the spec trained and reported
    them."""
    monkeypatch.chdir(tmp_path)
    data = json.loads(json.dumps(spec_dict))
    data["metrics"][key] = value
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    code, _, err = run(["train", str(path), "--dataset", "synthetic", "--train-size", "64",
                        "--val-size", "32", "--epochs", "1", "-q"], capsys)
    assert_one_clear_line(code, err, str(path), f"metrics.{key}", "does not match the network")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # no checkpoint begun
