"""The docs against the code: docs/configuration.md lists every key a study config reads."""
import dataclasses
import re
from pathlib import Path
from typing import get_type_hints

from nas.search.config import StudyConfig
from nas.settings import _dataclass_items

ROOT = Path(__file__).resolve().parents[1]


def config_keys(cls=StudyConfig, prefix=""):
    """Every key the loader reads, as ``section.key`` (``fidelity.levels.name`` for the keys of
    a list of tables): the fields ``nas.settings.from_dict`` accepts, whose names its "unknown
    key (known keys: ...)" errors list."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from config_keys(hint, f"{prefix}{f.name}.")
            continue
        yield f"{prefix}{f.name}"
        if (item := _dataclass_items(hint)) is not None:
            yield from config_keys(item, f"{prefix}{f.name}.")


def documented_keys(text):
    """``section.key`` of every table row whose first cell is a key in backticks, under the
    heading that names its section in backticks (``[data]``; none: the top level)."""
    section, keys = "", []
    for line in text.splitlines():
        if line.startswith("#"):
            named = re.search(r"`\[([a-z_.]+)\]`", line)
            section = named.group(1) + "." if named else ""
        elif row := re.match(r"\| `([a-z_]+)` \|", line):
            keys.append(section + row.group(1))
    return keys


def test_the_configuration_reference_lists_every_key_the_config_reads():
    keys = list(config_keys())
    assert {"name", "search_space.layers", "fidelity.levels", "fidelity.levels.train_size",
            "training.device", "pruner.warmup_epochs"} <= set(keys)
    documented = documented_keys((ROOT / "docs" / "configuration.md").read_text())
    assert len(documented) == len(set(documented)), "a key is documented twice"
    assert sorted(set(keys) - set(documented)) == [], "keys the reference leaves out"
    assert sorted(set(documented) - set(keys)) == [], "documented keys the config does not read"


def test_the_key_list_is_what_the_loader_accepts():
    """The enumeration above is the loader's: an unknown key's error lists the same keys."""
    import pytest

    from nas.errors import UserError
    from nas.search.config import FidelityLevel, SpaceConfig
    from nas.settings import from_dict

    for cls, section in ((StudyConfig, ""), (SpaceConfig, "search_space."),
                         (FidelityLevel, "fidelity.levels.")):
        with pytest.raises(UserError, match=r"known keys: (.*)\)") as e:
            from_dict(cls, {"no_such_key": 1})
        listed = re.search(r"known keys: (.*)\)", str(e.value)).group(1).split(", ")
        top = {k[len(section):].split(".")[0] for k in config_keys() if k.startswith(section)}
        assert set(listed) == top, cls.__name__


def test_every_docs_link_points_at_a_file():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), (page.name, target)
