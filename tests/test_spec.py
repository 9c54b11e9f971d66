"""Pattern spec JSON: round trip, and clear errors naming the bad field."""
import json

import pytest

from nas.engine.run_config import ArchConfig
from nas.engine.spec import PatternSpec, make_spec
from nas.errors import SpecError
from search_spaces import template_pattern


@pytest.fixture(scope="module")
def spec():
    return make_spec(template_pattern("log", [5, 4]), ArchConfig(growth=4, input_shape=(1, 16, 16)),
                     {"study": "demo", "trial": 7, "accuracy": 0.91})


def test_round_trip(spec, tmp_path):
    loaded = PatternSpec.load(spec.save(tmp_path / "x.json"))
    assert loaded == spec
    assert loaded.metrics["connections"] == spec.pattern.connections


@pytest.mark.parametrize("style", ["v1", "v2"])
def test_round_trip_with_style(style, tmp_path):
    styled = make_spec(template_pattern("nearest", [3, 4], 2, style=style),
                       ArchConfig(growth=4, input_shape=(1, 16, 16)))
    data = json.loads(styled.save(tmp_path / "s.json").read_text())
    assert data["style"] == style and ("stages" in data) == (style == "v1")
    loaded = PatternSpec.load(tmp_path / "s.json")
    assert loaded == styled and loaded.pattern.style == style
    assert loaded.pattern.stages == (3, 4) and loaded.hash != spec_hash_per_block()
    data["style"] = "per_block"  # the blocks of another style do not pass as per_block
    with pytest.raises(SpecError):
        PatternSpec.from_dict(data)


def spec_hash_per_block():
    return template_pattern("nearest", [3, 4], 2).hash


def edit(spec, change):
    data = json.loads(spec.to_json())
    change(data)
    return data


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(format_version=9), "format_version"),
    (lambda d: d.pop("blocks"), "blocks: missing"),
    (lambda d: d["blocks"][1]["inputs"][2].append(9), "hash|blocks\\[1\\].inputs"),
    (lambda d: d["architecture"].update(growth=-1), "architecture.growth"),
    (lambda d: d["architecture"].update(colour="red"), "architecture.colour: unknown key"),
    (lambda d: d["metrics"].update(mbd=1), "metrics.mbd: 1 does not match"),
    (lambda d: d["metrics"].pop("flops"), "metrics.flops"),
    (lambda d: d["origin"].update(trial="seven"), "origin.trial"),
    (lambda d: d.update(extra=1), "extra: unknown field"),
    (lambda d: d.update(hash="0" * 16), "hash: .* the pattern was edited"),
    # N6: where the pattern came from, edited by hand (here: a better accuracy).
    (lambda d: d["origin"].update(accuracy=0.99), "origin: edited by hand"),
])
def test_edited_spec_names_the_field(spec, change, field):
    with pytest.raises(SpecError, match=field):
        PatternSpec.from_dict(edit(spec, change))


def test_edited_pattern_without_hash_is_checked_against_metrics(spec):
    def change(d):
        d.pop("hash")
        d["blocks"][0]["inputs"][4] = [3]
    with pytest.raises(SpecError, match="metrics.connections"):
        PatternSpec.from_dict(edit(spec, change))


def test_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{ not json")
    with pytest.raises(SpecError, match="bad.json: not valid JSON"):
        PatternSpec.load(path)


def test_a_spec_without_an_origin_digest_is_taken_as_written(spec):
    """Specs exported before origin_digest, and hand-written ones, have none to check."""
    data = edit(spec, lambda d: (d.pop("origin_digest"), d["origin"].update(accuracy=0.5)))
    assert PatternSpec.from_dict(data).origin["accuracy"] == 0.5
