"""The codebase's own contracts: registries, the trial record, the Optuna adapter pinned to the
installed Optuna, torch-free read-only commands, scoped warnings, and the table formatters."""
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.engine.datasets import DATASETS
from nas.errors import ConfigError, DataError
from nas.search._optuna.api import TESTED_WITH, storage_of, trial_id
from nas.search._optuna.reads import claim_waiting
from nas.search.record import FIELDS, SlotKind, TrialRecord, record
from nas.search.strategy.samplers import PRUNERS, SAMPLERS
from nas.text_tables import format_table, html_table, markdown_table
from search_spaces import SEARCH_SPACES, STYLES, TEMPLATES, PatternError, Registry
from tests.testing import STORAGES, url_of

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "studies" / "results" / "principle_fashion_mnist"


@pytest.mark.parametrize("registry, error, kind", [
    (TEMPLATES, PatternError, "template"), (SEARCH_SPACES, PatternError, "search space"),
    (STYLES, PatternError, "style"),
    (DATASETS, DataError, "dataset"), (SAMPLERS, ConfigError, "sampler"),
    (PRUNERS, ConfigError, "pruner")])
def test_every_registry_names_the_unknown_and_the_known(registry, error, kind):
    with pytest.raises(error) as e:
        registry["nope"]
    assert str(e.value) == f"unknown {kind} 'nope'; known: {', '.join(registry)}"
    assert len(registry) >= 2 and all(name in registry for name in registry)
    assert "nope" not in registry and ["x"] not in registry


def test_registry_keeps_order_and_refuses_a_second_entry_of_a_name():
    reg: Registry[int] = Registry("thing", KeyError)
    reg.add("b", 2)
    reg.register("a")(1)
    assert list(reg) == ["b", "a"] and reg["a"] == 1 and reg.items() == [("b", 2), ("a", 1)]
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 3)
    assert reg["a"] == 1


def test_trial_record_round_trips_through_optuna_storage(storage_url):
    import uuid

    from nas.search.storage.backends import open_storage

    study = optuna.create_study(study_name=f"r-{uuid.uuid4().hex[:8]}",
                                storage=open_storage(storage_url))
    full = TrialRecord(**{name: None for name in FIELDS})
    values = {"slot": "search", "baseline": "log", "seed": 3, "budget_mode": "authors",
              "style": "v2", "block_output": "all",
              "pattern": {"blocks": [{"num_layers": 1, "inputs": [[0], [1]]}]},
              "fidelity": {"epochs": 4, "steps": None, "train_size": 8192, "val_size": 5000},
              "repeat_of": 7, "spec": {"blocks": [[0]]},
              "hash": "ab12", "connections": 17, "mbd": 3, "mean_distance": 1.5, "params": 10,
              "flops": 20, "device": "cpu", "threads": 2, "worker": "h:1", "reused_from": 2,
              "train_seconds": 1.25, "val_curve": [0.5, 0.6], "test_accuracy": 0.55,
              "loss_curve": [2.0, 1.0],
              "images_per_second": 99.0, "status": "ok", "fail_reason": "why",
              "requeued": True}
    assert set(values) == set(FIELDS)  # the test covers every field
    trial = study.ask()
    record(trial, **values)
    frozen = study.tell(trial, 0.5)
    got = TrialRecord.from_trial(frozen)
    assert got == TrialRecord(**values) and got != full
    assert got.to_user_attrs() == frozen.user_attrs == values
    assert got.is_baseline and got.is_reused
    empty = TrialRecord.from_trial(study.tell(study.ask(), 0.1))
    assert empty == TrialRecord() and not empty.is_baseline and not empty.is_reused


def test_a_finished_record_gives_back_the_slot_it_was_queued_as():
    from dataclasses import replace

    from nas.search.config import config_from_dict
    from nas.search.slots import baseline_slots, bench_slots, noise_slot

    cfg = config_from_dict({
        "name": "q", "trials": 1, "search_space": {"layers": [6]},
        "baselines": {"templates": ["log"], "styles": ["per_block", "v1"],
                      "budgets": ["exact", "authors"], "block_outputs": ["template", "all"]},
        "bench": {"seeds": [0, 1]}, "data": {"name": "synthetic"}})
    confirm = TrialRecord(slot="confirm", baseline="log", pattern={"blocks": []}, hash="cd34",
                          seed=2, fidelity={"epochs": 4}, repeat_of=7)
    slots = [*baseline_slots(cfg), *bench_slots(cfg), TrialRecord(slot="search"),
             noise_slot(cfg), confirm]
    assert len(slots) == 8 + 2 * len(cfg.search_space.build().all_patterns()) + 3
    assert [s.kind for s in slots[-3:]] == [SlotKind.SEARCH, SlotKind.NOISE, SlotKind.CONFIRM]
    for slot in slots:
        # Everything a worker writes later, over what the slot had.
        done = replace(slot, spec={"blocks": []}, hash=slot.hash or "ab12",
                       seed=3 if slot.seed is None else slot.seed, style=slot.style or "per_block",
                       connections=17, mbd=3, mean_distance=1.5, params=10, flops=20,
                       device="cpu", worker="h:1", train_seconds=1.0, val_curve=[0.5],
                       loss_curve=[1.0], status="ok", fail_reason="interrupted", requeued=True)
        assert done.queued() == slot


def test_record_refuses_a_misspelt_field():
    trial = optuna.create_study().ask()
    with pytest.raises(TypeError, match="fail_reasn"):
        record(trial, fail_reasn="typo")
    assert trial.user_attrs == {}


def test_optuna_adapter_is_pinned_to_the_installed_optuna():
    assert optuna.__version__.startswith(TESTED_WITH + "."), (
        f"nas/search/_optuna was checked against Optuna {TESTED_WITH}; "
        f"{optuna.__version__} is installed: re-check its private calls, then TESTED_WITH")
    study = optuna.create_study()
    for n in range(3):
        study.enqueue_trial({}, user_attrs={"n": n})
    waiting = study.get_trials(states=(TrialState.WAITING,))
    ids = [trial_id(t) for t in waiting]
    claimed = [claim_waiting(study, ids) for _ in range(4)]
    assert claimed[:3] == [trial_id(t) for t in waiting] and claimed[3] is None
    assert all(storage_of(study).get_trial(i).state == TrialState.RUNNING for i in claimed[:3])


@pytest.mark.parametrize("installed", ["5.1.0", "4.5.0", "6.0.0.dev"])
def test_a_storage_refuses_an_optuna_outside_the_tested_release(tmp_path, monkeypatch,
                                                                  installed):
    from nas.errors import UserError
    from nas.search.storage.backends import open_storage

    monkeypatch.setattr(optuna, "__version__", installed)
    with pytest.raises(UserError) as e:
        open_storage(f"sqlite:///{tmp_path}/s.db")
    message = str(e.value)
    assert "\n" not in message and f"Optuna {installed} is installed" in message
    assert f"tested with Optuna {TESTED_WITH}.x" in message
    assert not (tmp_path / "s.db").exists()  # refused before anything is written
    monkeypatch.setattr(optuna, "__version__", f"{TESTED_WITH}.7")
    open_storage(f"sqlite:///{tmp_path}/s.db")


def _optuna_private_names() -> set[str]:
    """The private attributes of Optuna's objects: those its classes set on ``self`` or
    define, named with a leading underscore."""
    import ast

    names = set()
    for path in Path(optuna.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in ("self", "cls"):
                names.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                names |= {d.name for d in node.body
                          if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return {n for n in names if n.startswith("_") and not n.endswith("__")}


def test_only_the_adapter_reaches_into_optunas_private_api():
    """Optuna's private modules (a component of the module path starting with `_`), its
    private names and its objects' private attributes (``study._storage``,
    ``trial._trial_id``) are used inside nas/search/_optuna only, so that an Optuna upgrade
    is checked there. Benchmarks and scripts too; tests may reach them, to check the adapter
    against Optuna."""
    import ast

    private = _optuna_private_names()
    assert {"_storage", "_study_id", "_trial_id", "_backend"} <= private
    adapter = ROOT / "nas" / "search" / "_optuna"
    found = []
    for path in sorted([*(ROOT / "nas").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
                        *(ROOT / "scripts").glob("*.py")]):
        if adapter in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.Attribute) and node.attr in private and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{where}: .{node.attr}")
                continue
            else:
                continue
            found += [f"{where}: {m}" for m in modules if m.split(".")[0] == "optuna"
                      and any(part.startswith("_") for part in m.split("."))]
    assert found == []


def test_a_claimed_trial_is_adopted_by_optunas_cache(tmp_path):
    """A worker claims straight from the database, so Optuna's cache in front of an RDB
    storage first hears of its trial from `adopt_trial`: suggesting, telling and reading the
    study afterwards must work as for a trial the cache read itself."""
    from nas.search._optuna.api import live_trial
    from nas.search._optuna.reads import claim_next
    from nas.search.storage.backends import open_storage

    url = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(study_name="s", storage=open_storage(url)).enqueue_trial({})
    study = optuna.load_study(study_name="s", storage=open_storage(url))  # a fresh cache
    claimed = claim_next(study, {"worker": "w"}, {"beat": 1.0})
    assert claimed is not None and claim_next(study) is None
    assert (claimed.state, claimed.user_attrs, claimed.system_attrs) == \
        (TrialState.RUNNING, {"worker": "w"}, {"beat": 1.0, "fixed_params": {}})
    trial = live_trial(study, trial_id(claimed), claimed)
    x = trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, x)
    done, = study.get_trials(deepcopy=False)
    assert (done.state, done.params, done.value) == (TrialState.COMPLETE, {"x": x}, x)
    assert done.datetime_start == claimed.datetime_start


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_live_trial_from_a_read_trial_is_the_one_optuna_builds(tmp_path, kind):
    """`live_trial` with the trial already read replicates Optuna's `Trial.__init__`
    (fails when Optuna's constructor sets anything else)."""
    from nas.search._optuna.api import live_trial
    from nas.search.storage.backends import open_storage

    storage = None if kind == "memory" else open_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 0.5}, user_attrs={"slot": "search"})
    waiting, = study.get_trials(states=(TrialState.WAITING,))
    ours = live_trial(study, trial_id(waiting), storage_of(study).get_trial(trial_id(waiting)))
    theirs = optuna.Trial(study, trial_id(waiting))
    assert vars(ours).keys() == vars(theirs).keys()
    for name, value in vars(theirs).items():
        if name == "_cached_frozen_trial":
            assert value == vars(ours)[name] and value.user_attrs == {"slot": "search"}
        else:
            assert vars(ours)[name] == value, name


@pytest.mark.parametrize("kind", ["memory", *STORAGES])
@pytest.mark.parametrize("outcome", ["complete", "inf", "multi", "pruned", "pruned_nan", "fail",
                                     "nan"])
def test_tell_live_stores_what_optunas_tell_stores(tmp_path, kind, outcome):
    """A worker's tell (no reads of the trial) leaves the stored trial as `Study.tell` does:
    state, values (a pruned trial's last reported value), and returns it so; it refuses what
    `Study.tell` refuses, and a trial finished elsewhere raises."""
    from optuna.exceptions import UpdateFinishedTrialError

    from nas.search._optuna.api import tell_live
    from nas.search.storage.backends import open_storage

    directions = ["maximize", "minimize"] if outcome == "multi" else ["maximize"]
    state, told = {"complete": (TrialState.COMPLETE, 0.25),
                   "inf": (TrialState.COMPLETE, float("-inf")),
                   "multi": (TrialState.COMPLETE, (0.25, 3.0)),
                   "pruned": (TrialState.PRUNED, None), "pruned_nan": (TrialState.PRUNED, None),
                   "fail": (TrialState.FAIL, None),
                   "nan": (TrialState.COMPLETE, float("nan"))}[outcome]
    stored = []
    for tell in ("optuna", "ours"):
        storage = None if kind == "memory" else open_storage(url_of(kind, tmp_path, tell))
        study = optuna.create_study(storage=storage, directions=directions,
                                    study_name=f"tell-{uuid.uuid4().hex}",
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        if outcome != "multi":
            trial.report(0.5, 0)
            trial.report(float("nan") if outcome == "pruned_nan" else 0.75, 1)
        if outcome == "nan":
            with pytest.raises(ValueError, match="nan"):
                tell_live(study, trial, state, told)
            with pytest.raises(ValueError, match="nan"):
                study.tell(trial, told, state=state)
            return
        if tell == "optuna":
            returned = study.tell(trial, told, state=state)
        else:
            returned = tell_live(study, trial, state, told)
            with pytest.raises(UpdateFinishedTrialError):
                tell_live(study, trial, state, told)
        again, = study.get_trials()
        assert (returned.state, returned.values, returned.params) == \
            (again.state, again.values, again.params)
        stored.append((again.state, again.values, again.params,
                       repr(again.intermediate_values)))  # nan != nan
    assert stored[0] == stored[1] and stored[0][0] == state


def test_the_record_fields_each_read_names_are_fields():
    """The reads that fetch only some of a record's fields name real ones (a misspelt one
    would silently read as None)."""
    from nas.search.execution.twins import TWIN_FIELDS
    from nas.search.experiment.study import STATUS_FIELDS
    from nas.search.slots import SLOT_FIELDS

    for fields in (SLOT_FIELDS, STATUS_FIELDS, TWIN_FIELDS):
        assert set(fields) <= set(FIELDS), set(fields) - set(FIELDS)


def test_importing_the_engine_does_not_change_global_warning_filters():
    code = ("import warnings, torch, optuna, plotly, tqdm.auto; before = list(warnings.filters);"
            "import nas.search.execution.worker, nas.search.experiment.study, nas.results.report,"
            " nas.cli;"
            "print(warnings.filters == before)")  # torch adds filters of its own
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_read_only_commands_never_load_torch(tmp_path):
    db = tmp_path / "study.db"
    shutil.copy(PUBLISHED / "study.db", db)
    name = json.loads((PUBLISHED / "analyze.json").read_text())["study"]
    storage, spec = f"sqlite:///{db}", str(tmp_path / "b.json")
    code = f"""
import sys
from nas.cli import main
codes = [main(["templates", "--layers", "12"]),
         main(["study", "status", {name!r}, "--storage", {storage!r}]),
         main(["analyze", {name!r}, "--storage", {storage!r}, "--resamples", "20"]),
         main(["export", {name!r}, "--storage", {storage!r}, "--out", {spec!r}])]
print("RESULT", codes, "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "RESULT [0, 0, 0, 0] False", out.stderr
    assert json.loads((tmp_path / "b.json").read_text())["origin"]["study"] == name


@pytest.mark.slow
def test_published_result_rechecks_from_its_stored_study(tmp_path):
    from nas.results.analysis import analyze
    from nas.search.storage.backends import load_study

    db = tmp_path / "study.db"
    shutil.copy(PUBLISHED / "study.db", db)
    published = json.loads((PUBLISHED / "analyze.json").read_text())
    again = analyze(load_study(published["study"], f"sqlite:///{db}"),
                    resamples=published["resamples"]).to_json()
    # Every published number re-checks; later versions only add fields (the style, the budget).
    assert {k: again[k] for k in published if k != "templates"} == \
        {k: v for k, v in published.items() if k != "templates"}
    assert [{k: t[k] for k in p} for t, p in zip(again["templates"], published["templates"])] \
        == published["templates"]
    assert again["style"] == "per_block"
    assert {(t["style"], t["budget_mode"]) for t in again["templates"]} == {("per_block",
                                                                              "exact")}


def test_every_published_analysis_reads_back():
    """What analyze wrote reads back to the same JSON; an analysis from before styles, stored
    layers and per-seed accuracies is decoded once, on reading."""
    from nas.results.analysis import PrincipleTest

    paths = sorted((ROOT / "studies" / "results").glob("**/analyze.json"))
    assert len(paths) >= 3
    for path in paths:
        published = json.loads(path.read_text())
        if "style" in published:
            assert PrincipleTest.from_json(published).to_json() == \
                {k: v for k, v in published.items() if k != "evidence"}, path
    old = PrincipleTest.from_json(json.loads((PUBLISHED / "analyze.json").read_text()))
    assert old.style == "per_block" and old.layers is None
    assert {(t.style, t.budget_mode, t.block_output, t.accuracies) for t in old.templates} == \
        {("per_block", "exact", "template", None)}


def test_text_markdown_and_html_tables():
    headers, rows = ["name", "value", "n"], [["a", 0.5, 3], ["long name", 12.25, 10]]
    assert format_table(headers, rows).splitlines() == [
        "name         value   n",
        "---------  -------  --",
        "a           0.5000   3",
        "long name  12.2500  10"]
    assert markdown_table(headers, rows).splitlines() == [
        "| name | value | n |", "|---|---|---|", "| a | 0.5000 | 3 |",
        "| long name | 12.2500 | 10 |"]
    assert html_table(["a<b"], [["x&y"]]) == \
        "<table><tr><th>a&lt;b</th></tr><tr><td>x&amp;y</td></tr></table>"
    assert format_table(["only"], []).splitlines() == ["only", "----"]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import of a module, relative ones resolved (``import m``:
    (m, []))."""
    import ast

    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            found.append((".".join(p for p in (base, node.module or "") if p),
                          [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def _nas_imports(path: Path, depth: int = 2) -> set[str]:
    """The nas modules a module imports, cut to their first ``depth`` components (2: the
    sub-packages; ``from nas import x`` imports nas.x)."""
    found = set()
    for module, names in _imports(path):
        modules = [f"{module}.{n}" for n in names] if module.count(".") + 1 < depth else [module]
        found |= {".".join(m.split(".")[:depth]) for m in modules if m.startswith("nas.")}
    return found


@pytest.mark.parametrize("package, allowed", [
    ("engine", {"nas.engine", "nas.errors", "nas.interrupts", "nas.settings", "nas._lazy"}),
    ("search", {"nas.search", "nas.engine", "nas.errors", "nas.interrupts", "nas.settings",
                "nas.stats", "nas._lazy"}),
    ("results", {"nas.results", "nas.search", "nas.engine", "nas.errors", "nas.interrupts",
                 "nas.settings", "nas.stats", "nas.text_tables", "nas._lazy"}),
])
def test_dependencies_point_one_way(package, allowed):
    for path in sorted((ROOT / "nas" / package).rglob("*.py")):
        assert _nas_imports(path) <= allowed, path.relative_to(ROOT)
    # The check resolves relative imports (analysis reads the trial record from search).
    assert "nas.search" in _nas_imports(ROOT / "nas" / "results" / "analysis.py")


# The parts of nas.search (its sub-packages and top modules), each with the parts it may import:
# experiments run workers, workers run a strategy's proposals on storages, and every use of
# Optuna's tables and private modules is the bottom one.
SEARCH_PARTS = {
    "experiment": {"execution", "slots", "config", "strategy", "record", "storage", "_optuna"},
    "execution": {"slots", "config", "strategy", "record", "storage", "_optuna"},
    "slots": {"config", "record", "_optuna"},
    "config": {"strategy", "record", "storage"},
    "strategy": {"_optuna"},
    "record": {"_optuna"},
    "storage": {"_optuna"},
    "_optuna": set(),
}


def test_the_parts_of_search_depend_one_way():
    search = ROOT / "nas" / "search"
    parts = {p.name.removesuffix(".py") for p in search.iterdir()
             if p.name not in ("__init__.py", "__pycache__")}
    assert parts == set(SEARCH_PARTS)
    for path in sorted(search.rglob("*.py")):
        if path.parent == search and path.name == "__init__.py":
            continue  # the package's face: its exports, from every part
        part = path.relative_to(search).parts[0].removesuffix(".py")
        used = {m.split(".")[2] for m in _nas_imports(path, depth=3)
                if m.startswith("nas.search.")} - {part}
        assert used <= SEARCH_PARTS[part], (path.relative_to(ROOT), used - SEARCH_PARTS[part])


def test_the_cli_uses_the_public_surfaces_of_search_and_results():
    """nas/cli.py imports no private module (a path component starting with `_`) and, of
    nas.search and nas.results, only the names their packages export."""
    import nas.results
    import nas.search

    surfaces = {"nas.search": set(nas.search.__all__), "nas.results": set(nas.results.__all__)}
    for module, names in _imports(ROOT / "nas" / "cli.py"):
        if module == "__future__":
            continue
        assert not any(part.startswith("_") for part in module.split(".")), module
        package = ".".join(module.split(".")[:2])
        if package in surfaces:
            assert module == package, f"{module}: import from {package} itself"
            assert set(names) <= surfaces[package], set(names) - surfaces[package]


def test_only_search_imports_its_optuna_adapter():
    for path in sorted((ROOT / "nas").rglob("*.py")):
        if (ROOT / "nas" / "search") in path.parents:
            continue
        used = [m for m, _ in _imports(path) if m.startswith("nas.search._optuna")]
        assert used == [], path.relative_to(ROOT)


@pytest.mark.parametrize("package", ["nas.search", "nas.results"])
def test_a_package_types_every_name_it_exports(package):
    """A package's lazy exports and the imports its `if TYPE_CHECKING:` block gives type
    checkers are the same names, of the same objects."""
    import ast
    import importlib

    module = importlib.import_module(package)
    init = Path(module.__file__)
    typed = {}
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imported in node.body:
                assert isinstance(imported, ast.ImportFrom) and imported.level == 1
                typed |= {a.name: f"{package}.{imported.module}" for a in imported.names}
    assert sorted(typed) == module.__all__
    for name, source in typed.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), name), name


def test_constraints_pin_installed_versions_that_pyproject_allows():
    """The README's commands install from constraints.txt: its pins must be what pyproject
    allows and what this suite runs with (re-lock with scripts/lock.py after an upgrade)."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parent.parent
    pins = dict(line.split("==") for line in (root / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    for req in map(Requirement, wanted):
        name = req.name.lower()
        assert name in pins, f"{name} is not in constraints.txt"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} is not {req.specifier}"
    for name, pinned in pins.items():
        assert version(name).split("+")[0] == pinned, f"{name} {version(name)} installed"
