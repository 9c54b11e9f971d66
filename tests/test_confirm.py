"""Winners you can trust: the noise of one trial, the confirm stage and export by confirmed
evidence. The statistics against closed forms and scipy; real tiny studies on SQLite and a
journal file, with a worker killed mid-confirm; studies from before confirm still work."""
import dataclasses
import json
import math
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from scipy import stats

from nas.cli import main
from nas.errors import ConfigError, UserError
from nas.results.analysis import analyze, study_rows
from nas.results.export import trial_spec
from nas.results.report import write_report
from nas.search.config import config_from_dict, load_config
from nas.search.execution.twins import completed_twin
from nas.search.execution.worker import run_worker
from nas.search.experiment.confirm import confirm_slots, start_confirm
from nas.search.experiment.evidence import Pick, Run, answer, describe_winner, evidence, noise_of
from nas.search.experiment.study import create_study, study_status
from nas.search.record import SlotKind, TrialRecord, record
from nas.search.slots import enqueue_slots
from nas.search.storage.backends import load_study
from nas.search.strategy.guided import ScreenSampler
from nas.stats import mean_ci, pooled_std, welch_difference
from tests.test_faults import finish, skipnas, wait_mid_trial
from tests.testing import stacks, tiny_raw, write_toml

ROOT = Path(__file__).resolve().parents[1]


# --- statistics --------------------------------------------------------------------------

def test_mean_ci_is_the_student_t_interval():
    m = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert (m.mean.value, m.std, m.n) == (2.0, 1.0, 3)
    assert m.mean.low == pytest.approx(2 - half) and m.mean.high == pytest.approx(2 + half)
    one = mean_ci([0.7])
    assert one.mean.value == 0.7 and math.isnan(one.mean.low) and math.isnan(one.se)


@pytest.mark.parametrize("seed", range(3))
def test_welch_difference_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.70, 0.01, 4), rng.normal(0.68, 0.03, 5)
    d = welch_difference(a, b)
    t = stats.ttest_ind(a, b, equal_var=False)
    ci = t.confidence_interval(0.95)
    assert d.diff.value == pytest.approx(a.mean() - b.mean())
    assert (d.diff.low, d.diff.high) == pytest.approx((ci.low, ci.high))
    assert d.df == pytest.approx(t.df)
    assert d.diff.excludes_zero == (t.pvalue < 0.05)


def test_pooled_std_by_hand():
    # Squared deviations: (1, 1) -> 2 over 1 df; (2, 4, 6) -> 8 over 2 df; the single is skipped.
    std, df = pooled_std([[1.0, 3.0], [2.0, 4.0, 6.0], [9.0]])
    assert df == 3 and std == pytest.approx(math.sqrt(10 / 3))
    assert math.isnan(pooled_std([[1.0], [2.0]])[0])


def test_noise_pools_seeds_per_pattern_and_ranks_two_seeds():
    rng = np.random.default_rng(0)
    truth = np.linspace(0.6, 0.7, 8)
    runs = [Run(10 * p + s, SlotKind.SEARCH, "search", f"p{p}", s, None,
                float(truth[p] + rng.normal(0, 0.002)), None) for p in range(8) for s in (0, 1)]
    runs.append(Run(999, SlotKind.SEARCH, "search", "alone", 0, None, 0.9, None))
    noise = noise_of(runs)
    groups = [[r.accuracy for r in runs if r.hash == f"p{p}"] for p in range(8)]
    assert noise.patterns == 8 and noise.df == 8
    assert noise.seed_std == pytest.approx(pooled_std(groups)[0])
    pairs = np.array(groups)
    assert noise.seed_spearman == pytest.approx(stats.spearmanr(pairs[:, 0],
                                                                pairs[:, 1]).statistic)
    assert noise.seed_spearman > 0.9  # the patterns differ far more than the seeds
    few = noise_of(runs[:8])  # 4 patterns: too few for a rank correlation
    assert few.patterns == 4 and math.isnan(few.seed_spearman)


# --- configs --------------------------------------------------------------------------------

def tiny(tmp_path, storage=None, **sections):
    """A tiny study with one noise repeat and a confirm stage; a keyword replaces a section."""
    raw = tiny_raw(tmp_path, name="conf", storage=storage or f"sqlite:///{tmp_path}/c.db",
                   noise={"repeats": 1}, confirm={"top": 2, "seeds": 2, "epochs": 3})
    return config_from_dict({**raw, **sections}, "c.toml")


@pytest.mark.parametrize("section, message", [
    ({"noise": {"repeats": 5}}, "noise.repeats: must be <= trials (4)"),
    ({"confirm": {"seeds": 1}}, "confirm.seeds: must be in 2..100"),
    ({"confirm": {"top": 0}}, "confirm.top: must be in 1..100"),
    ({"confirm": {"baselines": ["logg"]}}, "confirm.baselines: unknown template 'logg'"),
    ({"confirm": {"epochs": 0}}, "confirm.epochs: must be >= 1"),
    ({"confirm": {"val_size": -3}}, "confirm.val_size: must be a count"),
    ({"confirm": {"seed": 3}}, "confirm.seed: unknown key"),
])
def test_noise_and_confirm_settings_are_validated(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny(tmp_path, **section)


# --- a real tiny study ---------------------------------------------------------------------

def write_confirm_config(path, storage):
    """:func:`tiny`'s config as a TOML file."""
    return write_toml(path, tiny_raw(path.parent, name="conf", storage=storage,
                                     noise={"repeats": 1},
                                     confirm={"top": 2, "seeds": 2, "epochs": 3}))


def records(study, kind=None, states=(TrialState.COMPLETE,)):
    out = [(t, TrialRecord.from_trial(t)) for t in study.get_trials(deepcopy=False, states=states)]
    return [(t, r) for t, r in out if kind is None or r.kind == kind]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_confirm_on_a_real_study_killed_and_resumed(tmp_path, kind):
    storage = {"sqlite": f"sqlite:///{tmp_path}/c.db", "journal": f"journal:///{tmp_path}/c.log"}
    config = write_confirm_config(tmp_path / "c.toml", storage[kind])
    cfg = load_config(config)
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    search = records(study)
    assert [r.kind for _, r in search].count(SlotKind.SEARCH) == 4
    noise = [(t, r) for t, r in search if r.kind == SlotKind.NOISE]
    assert len(noise) == 1 and noise[0][1].seed == 1  # the earliest search pattern, next seed
    first = study.trials[noise[0][1].repeat_of]
    assert noise[0][1].hash == TrialRecord.from_trial(first).hash and first.number == 0
    before = analyze(study, resamples=50).principle

    # Confirm with a second worker that is killed mid-trial: its trial is retried elsewhere.
    confirm = skipnas("confirm", str(config))
    deadline = time.time() + 120
    while not records(study, SlotKind.CONFIRM, (TrialState.WAITING, TrialState.RUNNING)):
        assert confirm.poll() is None, confirm.communicate()
        assert time.time() < deadline, stacks(confirm)
        time.sleep(0.1)
    worker = skipnas("worker", str(config))
    killed, victim = wait_mid_trial(study, [worker])
    victim.send_signal(signal.SIGKILL)
    (rc, err), _ = finish([confirm, worker])
    assert rc == 0, err
    again = skipnas("confirm", str(config))
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0 and "0 trials queued" in out and "ran 0 trials" in out, err

    # Exactly one completed trial per confirm slot, none run twice, nothing left queued.
    wanted = {(s.hash, s.seed) for s in confirm_slots(study, cfg)}
    assert len(wanted) == 2 * 3  # top 2 and log, 2 seeds each
    done = records(study, SlotKind.CONFIRM)
    assert sorted((r.hash, r.seed) for _, r in done) == sorted(wanted)
    assert not records(study, states=(TrialState.WAITING, TrialState.RUNNING))
    assert study.trials[killed].state == TrialState.FAIL
    fidelity = cfg.confirm_fidelity.to_dict()
    assert all(r.fidelity == fidelity and len(r.val_curve) == 3 for _, r in done)  # 3 epochs
    # Confirm trials stay apart from the search: same analysis, no params for any sampler.
    after = analyze(study, resamples=50).principle
    for key in ("trials_total", "trials_at_budget", "correlations", "templates"):
        assert getattr(after, key) == getattr(before, key), key
    confirm_numbers = {t.number for t, _ in done}
    assert not confirm_numbers & {row.trial for row in study_rows(study, reused=True)}
    assert all(not t.params and not t.distributions for t, _ in done)
    sampler = ScreenSampler(cfg.search_space.build())
    assert all(sampler.pattern_of(t) is None for t, _ in done)
    # Export takes the best confirmed mean, and says so.
    ev = evidence(study, cfg.search_fidelity)
    winner = ev.winner
    values = [t.values[0] for t, r in done if r.hash == winner.hash]
    assert winner.mean.mean.value == pytest.approx(np.mean(values)) == max(
        np.mean([t.values[0] for t, r in done if r.hash == h]) for h, _ in wanted)
    exported = trial_spec("conf", storage[kind])
    origin = exported.spec.origin
    assert exported.spec.hash == winner.hash and origin["accuracy"] == winner.mean.mean.value
    assert origin["confirmed"]["seeds"] == 2 and origin["confirmed"]["fidelity"] == fidelity
    assert exported.note.startswith("confirmed: ")
    status = study_status("conf", storage[kind])
    assert status.evidence.winner == winner and status.evidence.confirm_pending == 0


def test_nothing_is_confirmed_while_confirm_trials_wait(tmp_path, capsys):
    """N2: with the confirm stage killed after its first trial, `status` called a pattern
    resting on one seed "confirmed" ([nan, nan]), `export` exported it and wrote NaN into the
    spec. While a confirm trial waits or runs nothing is confirmed: status says what is
    pending, export takes the best single run marked unconfirmed, and the JSON is valid."""
    cfg = tiny(tmp_path, confirm={"top": 1, "seeds": 2})
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    start_confirm(cfg)
    run_worker(cfg, study=study, progress=False)
    url = cfg.storage_url
    ev = study_status("conf", url).evidence
    assert ev.winner is not None
    # --pattern best-template exports the confirmed template with the best mean.
    assert main(["export", "conf", "--storage", url, "--pattern", "best-template", "--out",
                 str(tmp_path / "t.json")]) == 0
    template = next(c for c in ev.confirmed if c.label != "search")
    assert json.loads((tmp_path / "t.json").read_text())["hash"] == template.hash
    assert f"answer: {answer(ev).sentence}" in capsys.readouterr().out
    assert main(["export", "conf", "--storage", url, "--pattern", "answer", "--out",
                 str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["hash"] == answer(ev).hash
    [(_, done)] = records(study, SlotKind.CONFIRM)[:1]   # one more seed of a pattern, queued
    enqueue_slots(study, [dataclasses.replace(done.queued(), seed=99)])

    ev = study_status("conf", url).evidence
    assert ev.winner is None and ev.confirmed == () and ev.confirm_pending == 1
    assert main(["study", "status", "conf", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "confirmed: none yet (1 confirm trials queued or running" in out
    assert "confirmed best" not in out
    assert main(["export", "conf", "--storage", url, "--out", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "single unconfirmed run" in out and "1 confirm trials are still queued" in out

    def no_nan(word):
        raise AssertionError(f"{word} in the exported JSON")
    spec = json.loads((tmp_path / "b.json").read_text(), parse_constant=no_nan)
    assert "confirmed" not in spec["origin"]


def test_a_pattern_missing_confirm_seeds_is_left_out():
    """N2: a pattern whose confirm trial failed for good rests on fewer seeds than the others:
    it is left out of the confirmed patterns, and the winner's line says so."""
    study = optuna.create_study(direction="maximize")
    for hash_, seeds, acc in (("a", (1, 2, 3), 0.70), ("b", (1,), 0.90), ("c", (1, 2, 3), 0.60)):
        for seed in seeds:
            trial = study.ask()
            record(trial, slot="confirm", hash=hash_, seed=seed, baseline="log" if hash_ == "c"
                   else None)
            study.tell(trial, acc + seed / 1000)
    ev = evidence(study)
    assert [c.hash for c in ev.confirmed] == ["a", "c"] and ev.confirm_short == 1
    assert all(math.isfinite(c.mean.mean.low) for c in ev.confirmed)
    line = describe_winner(ev)
    assert line.startswith("confirmed best: ") and "(pattern a)" in line
    assert line.endswith("left out: 1 patterns miss confirm seeds (their trials failed)")


@pytest.mark.slow
def test_confirm_refuses_an_unfinished_search_and_another_fidelity(tmp_path):
    cfg = tiny(tmp_path)
    study = create_study(cfg)
    with pytest.raises(UserError, match="5 search trials are still queued or running"):
        start_confirm(cfg)
    run_worker(cfg, study=study, progress=False)
    _, queued = start_confirm(cfg)
    assert queued == len(confirm_slots(study, cfg))
    assert start_confirm(cfg)[1] == 0  # a second call queues nothing
    with pytest.raises(UserError, match="holds confirm trials at another fidelity"):
        start_confirm(tiny(tmp_path, confirm={"top": 2, "seeds": 2, "epochs": 4}))


def test_a_twin_is_reused_only_at_the_same_fidelity(tmp_path):
    cfg = tiny(tmp_path)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    record(trial, hash="abc", seed=1)
    study.tell(trial, 0.5)
    search, confirm = cfg.search_fidelity, cfg.confirm_fidelity
    assert completed_twin(study, "abc", 1, search, search).number == 0
    assert completed_twin(study, "abc", 1, confirm, search) is None
    assert completed_twin(study, "abc", 2, search, search) is None


# --- studies from before confirm -----------------------------------------------------------

def test_a_study_from_before_confirm_analyzes_reports_and_exports(tmp_path, capsys):
    published = ROOT / "studies" / "results" / "principle_fashion_mnist" / "study.db"
    shutil.copy(published, tmp_path / "old.db")
    url = f"sqlite:///{tmp_path}/old.db"
    study = load_study("principle_fashion_mnist", url)
    result = analyze(study, resamples=20)
    ev = result.evidence
    # Its templates ran with 3 seeds: the noise is measured from them.
    assert ev.noise.patterns >= 4 and ev.noise.seed_std > 0
    assert ev.confirmed == () and ev.best is not None and ev.best.within_se >= 1
    write_report(study, tmp_path / "r.html", result.principle)
    assert "How far the numbers can be trusted" in (tmp_path / "r.html").read_text()
    assert main(["export", "principle_fashion_mnist", "--storage", url,
                 "--out", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "the pick is a single unconfirmed run" in out and "skipnas confirm" in out
    spec = json.loads((tmp_path / "b.json").read_text())
    assert "confirmed" not in spec["origin"]


def _confirmed_study(groups):
    """An in-memory study of confirm runs: {hash: (label, accuracies by seed 1..n)}; searched
    patterns repeat search trial 0."""
    study = optuna.create_study(direction="maximize")
    for hash_, (label, accuracies) in groups.items():
        for seed, acc in enumerate(accuracies, 1):
            trial = study.ask()
            record(trial, slot="confirm", hash=hash_, seed=seed,
                   **({"baseline": label} if label != "search" else {"repeat_of": 0}))
            study.tell(trial, acc)
    return study


@pytest.mark.parametrize("groups, pick, name", [
    # nearest has the best mean: train it
    ({"s": ("search", [0.70, 0.71, 0.72]), "l": ("log", [0.69, 0.70, 0.71]),
      "n": ("nearest", [0.72, 0.73, 0.74])}, Pick.TEMPLATE, "nearest"),
    # the searched pattern leads by a seed's noise: not separated, the template is the answer
    ({"s": ("search", [0.70, 0.75, 0.72]), "l": ("log", [0.69, 0.74, 0.71]),
      "n": ("nearest", [0.69, 0.72, 0.70])}, Pick.TEMPLATE, "log"),
    # far ahead of every template, seeds agreeing: the searched pattern
    ({"s": ("search", [0.80, 0.801, 0.802]), "l": ("log", [0.70, 0.701, 0.702]),
      "n": ("nearest", [0.69, 0.691, 0.692])}, Pick.SEARCHED, "trial 0"),
])
def test_the_answer_names_a_template_unless_a_searched_pattern_is_ahead_of_every_one(
        groups, pick, name):
    """Issue 38/40: the winner was compared with log only, though nearest tied or beat it, and
    "which pattern should I train?" was never answered in a sentence."""
    a = answer(evidence(_confirmed_study(groups)))
    assert (a.pick, a.name) == (pick, name)
    if pick == Pick.TEMPLATE:
        assert a.sentence.startswith(f"Train the {name} template:")
    else:
        # Paired by seed, pooled over the three patterns; log's comparison is the first of
        # Holm's steps (the smaller p-value), at 1 - 0.05 / 2.
        from nas.stats import blocked_design
        table = [groups[h][1] for h in ("s", "l", "n")]
        d = blocked_design(table).difference(0, 1, 1 - 0.05 / 2)
        assert a.sentence.startswith(
            f"Train trial 0's pattern (s): it is ahead of the best template, log, by "
            f"{d.diff.value:+.4f} {d.diff.interval('+.4f')} (seeds paired, the variance pooled "
            f"over the 3 confirmed patterns (4 df), Holm over the 2 templates); picked and "
            f"measured on separate halves of the seeds its lead is +0.1000.")


def test_differences_from_log_pair_the_seeds_and_pool_the_variance_with_holm_levels():
    """Issue 38: each confirmed pattern's difference from log was Welch's, on its own few
    seeds (seed effects shared by every pattern counted as noise; a variance picked by the
    selection), Bonferroni-corrected. Now seeds are blocks: a pattern that is +0.01 at every
    seed while the seeds themselves differ by 0.05 is separated from log."""
    seeds = np.array([0.0, 0.05, -0.04, 0.02])
    rng = np.random.default_rng(3)
    groups = {"l": ("log", 0.70 + seeds + rng.normal(0, 0.002, 4)),
              "a": ("search", 0.71 + seeds + rng.normal(0, 0.002, 4)),
              "b": ("search", 0.70 + seeds + rng.normal(0, 0.002, 4)),
              "n": ("nearest", 0.695 + seeds + rng.normal(0, 0.002, 4))}
    ev = evidence(_confirmed_study({h: (lab, list(acc)) for h, (lab, acc) in groups.items()}))
    by = {c.hash: c for c in ev.confirmed}
    from nas.stats import blocked_design, holm_levels
    table = [groups[h][1] for h in ("l", "a", "b", "n")]
    design = blocked_design(table)
    p_values = [design.p_difference(i, 0) for i in (1, 2, 3)]
    for i, h, level in zip((1, 2, 3), ("a", "b", "n"), holm_levels(p_values)):
        assert by[h].vs_log == design.difference(i, 0)
        assert by[h].vs_log_adjusted == design.difference(i, 0, level)
    assert by["a"].vs_log_adjusted.diff.low > 0  # separated, also at Holm's level
    welch = welch_difference(groups["a"][1], groups["l"][1]).diff
    assert welch.low < 0  # what the old interval said: the seeds' spread swamps the +0.01
    assert by["l"].vs_log is None and by["l"].vs_log_adjusted is None


def test_before_a_confirm_stage_the_answer_is_the_best_single_run_unconfirmed():
    study = optuna.create_study(direction="maximize")
    for acc in (0.6, 0.7):
        trial = study.ask()
        record(trial, slot="search", hash=f"h{acc}", seed=0)
        study.tell(trial, acc)
    a = answer(evidence(study))
    assert a.pick == Pick.SINGLE_RUN and a.name == "trial 1" and "unconfirmed" in a.sentence
    assert answer(evidence(optuna.create_study())).pick == Pick.NONE


# --- statistics that survive selection ---------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_blocked_design_f_test_is_the_two_way_anova_by_least_squares(seed):
    """The omnibus F of patterns x seeds (seeds as blocks) against an independent least-squares
    fit: full model (pattern + seed effects) against the seeds-only model."""
    from nas.stats import blocked_design

    rng = np.random.default_rng(seed)
    p, s = 5, 4
    table = 0.7 + rng.normal(0, 0.01, (p, 1)) + rng.normal(0, 0.02, (1, s)) + \
        rng.normal(0, 0.005, (p, s))
    y = table.ravel()
    pat = np.kron(np.eye(p), np.ones((s, 1)))
    blk = np.kron(np.ones((p, 1)), np.eye(s))

    def rss(x):
        fit = np.linalg.lstsq(x, y, rcond=None)[0]
        return float(((y - x @ fit) ** 2).sum())

    full, reduced = rss(np.hstack([pat, blk[:, 1:]])), rss(blk)
    df = (p - 1) * (s - 1)
    f = ((reduced - full) / (p - 1)) / (full / df)
    d = blocked_design(table)
    assert d.df == df and d.residual_std == pytest.approx(math.sqrt(full / df))
    assert d.f == pytest.approx(f) and d.p_value == pytest.approx(stats.f.sf(f, p - 1, df))


def test_blocked_difference_of_two_patterns_is_the_paired_t_interval():
    """With two patterns the pooled residual variance is the paired differences' variance / 2:
    the blocked interval is scipy's paired t-test's."""
    from nas.stats import blocked_design

    a, b = np.array([0.71, 0.69, 0.73, 0.70]), np.array([0.70, 0.69, 0.71, 0.68])
    d = blocked_design([a, b]).difference(0, 1)
    t = stats.ttest_rel(a, b)
    ci = t.confidence_interval(0.95)
    assert d.diff.value == pytest.approx((a - b).mean())
    assert (d.diff.low, d.diff.high) == pytest.approx((ci.low, ci.high))
    assert blocked_design([a, b]).p_difference(0, 1) == pytest.approx(t.pvalue)


def test_holm_by_hand():
    from nas.stats import holm, holm_levels

    # Sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, kept monotone at 0.06.
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    # 0.01 <= 0.05 / 3 rejects; 0.03 > 0.05 / 2 stops Holm there: 0.04 at 0.03's level.
    assert holm_levels([0.01, 0.04, 0.03]) == pytest.approx(
        [1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 2])
    # Every step rejects: each at its own level.
    assert holm_levels([0.001, 0.04, 0.02]) == pytest.approx([1 - 0.05 / 3, 0.95, 1 - 0.05 / 2])
    # Holm rejects nothing: the second interval must not exclude 0 at 0.95 (it would, 0.04).
    assert holm([0.03, 0.04]) == pytest.approx([0.06, 0.06])
    assert holm_levels([0.03, 0.04]) == pytest.approx([0.975, 0.975])


def test_cross_fit_lead_by_hand():
    """Picked on seeds (1, 2), measured on (3, 4), and the other way round."""
    from nas.stats import cross_fit_lead

    table = np.array([[0.80, 0.70, 0.70, 0.70],    # searched: lucky on the first half
                      [0.72, 0.72, 0.74, 0.74],    # searched: steady
                      [0.71, 0.71, 0.71, 0.71]])   # the template
    # First half picks row 0 (0.75 vs 0.72): on the second half 0.70 - 0.71 = -0.01.
    # Second half picks row 1 (0.74): on the first half 0.72 - 0.71 = +0.01.
    assert cross_fit_lead(table, [0, 1], [2]) == pytest.approx(0.0)
    naive = max(table[0].mean(), table[1].mean()) - table[2].mean()
    assert naive == pytest.approx(0.02)
    assert math.isnan(cross_fit_lead(table[:, :1], [0, 1], [2]))


def test_an_accuracy_interval_stays_within_zero_and_one():
    """Issue 38: with 2 seeds a t(1) interval ran to 1.0367."""
    study = _confirmed_study({"s": ("search", [0.98, 0.70]), "l": ("log", [0.60, 0.61])})
    (top, _) = evidence(study).confirmed
    assert top.mean.mean.high == 1.0 and top.mean.mean.low == 0.0
    assert mean_ci([0.98, 0.70]).mean.high > 1   # unbounded, the plain t-interval
