"""Optuna-native use: skipnas' spaces and trial record inside a user's own objective."""
import optuna
import pytest
from optuna.trial import FixedTrial

import nas
from nas.engine.run_config import ArchConfig
from nas.engine.spec import make_spec
from nas.errors import UserError
from nas.results.export import trial_spec
from nas.search.config import SpaceConfig, search_fidelity, stored_config, study_style
from nas.search.record import TrialRecord, TrialRow
from search_spaces import make_space, reads_of_input, template_pattern

ARCH = ArchConfig(growth=4, bottleneck=False, input_shape=(1, 16, 16))
PARAMS = {f"offset_{o}": k for o, k in zip(range(2, 7), (0.9, 0.1, 0.8, 0.2, 0.3))}


def test_a_space_its_config_and_its_table_suggest_the_same_pattern():
    table = {"name": "offsets", "layers": [6]}
    drawn = {nas.suggest_pattern(FixedTrial(PARAMS), space).hash for space in
             (table, SpaceConfig("offsets", (6,)), make_space("offsets", [6]))}
    assert len(drawn) == 1
    with pytest.raises(UserError, match=r"^search_space\.layers: must be a non-empty list"):
        nas.suggest_pattern(FixedTrial(PARAMS), {"name": "offsets", "layers": []})


def test_the_first_suggestion_stamps_the_study_with_its_space(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="mine", storage=url, direction="maximize")
    space = make_space("offsets", [4, 4], style="v1")
    trial = study.ask()
    pattern = nas.suggest_pattern(trial, space)
    study.tell(trial, 0.5)
    assert stored_config(study) == {"search_space": space.describe()}
    assert study_style(study) == "v1" and search_fidelity(study) is None
    assert study.metric_names == ["val_accuracy"]
    # Its params are stored (written together): they decode to the same pattern again.
    assert nas.suggest_pattern(FixedTrial(study.trials[0].params), space) == pattern
    nas.suggest_pattern(study.ask(), space)  # stamped with the same space: fine
    with pytest.raises(UserError, match="holds patterns of the search space .* use another"):
        nas.suggest_pattern(study.ask(), make_space("offsets", [4, 4]))
    low = optuna.create_study(study_name="low", storage=url, direction="minimize")
    with pytest.raises(UserError, match="minimises .* direction='maximize'"):
        nas.suggest_pattern(low.ask(), space)
    assert stored_config(low) is None


def test_record_trial_stores_the_record_the_readers_read(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="mine", storage=url, direction="maximize")
    pattern = template_pattern("log", [6])
    trial = study.ask()
    spec = nas.record_trial(trial, pattern, arch=ARCH, seed=3, train_seconds=1.5,
                            val_curve=[0.25, 0.5], device="cpu")
    study.tell(trial, 0.5)
    assert spec == make_spec(pattern, ARCH, {"study": "mine", "trial": 0, "seed": 3})
    r = TrialRecord.from_trial(study.trials[0])
    assert (r.spec, r.hash, r.seed, r.style, r.train_seconds, r.val_curve, r.device) == \
        (spec.to_dict(), pattern.hash, 3, "per_block", 1.5, [0.25, 0.5], "cpu")
    assert (r.connections, r.mbd, r.mean_distance, r.params, r.flops) == \
        tuple(spec.metrics[k] for k in ("connections", "mbd", "mean_distance", "params", "flops"))
    row = TrialRow.from_trial(study.trials[0], "per_block")
    assert (row.hash, row.accuracy, row.seed, row.params) == (pattern.hash, 0.5, 3,
                                                              spec.metrics["params"])
    assert row.reads_of_input == reads_of_input(pattern)   # read from the stored spec
    assert trial_spec("mine", url).spec.hash == pattern.hash
    with pytest.raises(UserError, match="a Pattern needs arch="):
        nas.record_trial(study.ask(), pattern, seed=0)
    with pytest.raises(UserError, match="a PatternSpec carries its own"):
        nas.record_trial(study.ask(), spec, seed=0, arch=ARCH)
