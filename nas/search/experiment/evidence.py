"""How far a study's numbers can be trusted, read from its storage: the noise of one trial
(from every pattern trained with more than one seed at the search's fidelity), the best single
run with how many others lie within its noise, and the confirm stage's means, intervals and
differences from log.

Search, noise and baseline trials are the search's evidence; confirm trials (`skipnas
confirm`) are kept apart: they re-train chosen patterns with fresh seeds, maybe longer, so a
pattern picked for a lucky run is measured again rather than trusted."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from ...stats import (
    Difference,
    Estimate,
    MeanCI,
    blocked_design,
    cross_fit_lead,
    holm,
    holm_levels,
    mean_ci,
    pooled_std,
    spearman,
)
from ..config import Fidelity
from ..record import SlotKind, TrialRecord, role_of

MIN_RANK_PATTERNS = 5  # patterns with two seeds needed for a seed-to-seed rank correlation
SEARCH_KINDS = (SlotKind.SEARCH, SlotKind.NOISE, SlotKind.BASELINE, SlotKind.BENCH)
REFERENCE = "log"      # the confirmed template every pattern is compared with
MIN_INTERVAL_SEEDS = 3  # a mean over fewer seeds gets no interval in words (t(1) spans ~all)


class Run(NamedTuple):  # a tuple, not a frozen dataclass: status builds one per trial (100k)
    """One completed trial as evidence: its pattern, seed, fidelity and accuracy."""
    number: int
    kind: SlotKind
    label: str             # the template it trains, or "search"
    hash: str
    seed: int
    fidelity: dict[str, Any] | None  # None: the study's own
    accuracy: float
    repeat_of: int | None


Recorded = Sequence[tuple[FrozenTrial, TrialRecord]]  # completed trials with their records


def recorded(complete: Iterable[FrozenTrial]) -> Recorded:
    """Completed trials with their records."""
    return [(t, TrialRecord.from_trial(t)) for t in complete]


def runs(complete: Recorded) -> list[Run]:
    """Every completed trial with a pattern (reused ones included: a twin's result is a real
    run of that pattern, seed and fidelity)."""
    out = []
    for t, r in complete:
        if r.hash is None or r.seed is None or not t.values:
            continue
        out.append(Run(t.number, r.kind, r.baseline or "search", r.hash, r.seed, r.fidelity,
                       float(t.values[0]), r.repeat_of))
    return out


@dataclass(frozen=True)
class Noise:
    """The spread of one trial's accuracy over seeds, at the search's fidelity."""
    seed_std: float          # pooled within-pattern std over seeds = the SE of one trial
    df: int                  # its degrees of freedom (runs - patterns, over repeated patterns)
    patterns: int            # patterns trained with two or more seeds
    seed_spearman: float     # rank agreement of two seeds over those patterns (NaN: < 5)

    @property
    def measured(self) -> bool:
        return self.df > 0


def noise_of(same_fidelity: Iterable[Run]) -> Noise:
    """Pool the seeds of every pattern trained more than once (runs at one fidelity; a seed
    run twice counts once)."""
    groups: dict[str, dict[int, float]] = {}
    for run in same_fidelity:
        groups.setdefault(run.hash, {})[run.seed] = run.accuracy
    repeated = [g for g in groups.values() if len(g) >= 2]
    std, df = pooled_std([list(g.values()) for g in repeated])
    rho = math.nan
    if len(repeated) >= MIN_RANK_PATTERNS:
        pairs = np.array([[g[s] for s in sorted(g)[:2]] for g in repeated])
        rho = spearman(pairs[:, 0], pairs[:, 1])
    return Noise(std, df, len(repeated), rho)


@dataclass(frozen=True)
class BestRun:
    """The best single run of the search, and how many other runs its noise cannot tell from
    it (accuracy within one SE of one trial)."""
    number: int
    accuracy: float
    hash: str
    se: float                # NaN: noise not measured
    within_se: int
    role: str = ""           # TrialRecord.role ("": evidence stored before roles were)


@dataclass(frozen=True)
class Confirmed:
    """A confirmed pattern: its confirm runs' mean and interval, its brief (search) accuracy,
    and its difference from log's confirmed mean."""
    label: str               # "search" or the template's name
    hash: str
    trial: int               # a confirm trial of it (its spec is what export writes)
    repeat_of: int | None    # the search trial it was chosen from
    brief: float             # the search-fidelity accuracy it was chosen by (NaN: none)
    accuracies: tuple[float, ...]
    mean: MeanCI
    vs_log: Difference | None          # paired by seed, the variance pooled (blocked design)
    vs_log_adjusted: Difference | None  # the same at Holm's level over every pattern compared

    @property
    def name(self) -> str:
        return self.label if self.label != "search" else f"trial {self.repeat_of}"

    def to_json(self) -> dict[str, Any]:
        """Its fields by name, the mean and differences flat as :class:`MeanCI` and
        :class:`Difference` write them."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "accuracies": list(self.accuracies), "mean": self.mean.to_json(),
                **{k: None if d is None else d.to_json()
                   for k, d in (("vs_log", self.vs_log),
                                ("vs_log_adjusted", self.vs_log_adjusted))}}


@dataclass(frozen=True)
class Curse:
    """What a pick by one brief run loses when measured again: its brief accuracy minus its
    confirmed mean (at a higher confirm fidelity this also holds the gain of longer training),
    and its lead over log, brief (log's baseline runs) and confirmed."""
    pick: str
    brief: float
    confirmed: float
    drop: float
    brief_lead: float        # NaN: log has no brief runs (no log baseline in the search)
    confirmed_lead: float    # NaN: log not confirmed


@dataclass(frozen=True)
class Evidence:
    noise: Noise
    best: BestRun | None
    confirmed: tuple[Confirmed, ...]        # best confirmed mean first
    confirm_fidelity: dict[str, Any] | None
    confirm_pending: int                    # confirm trials queued or running
    same_fidelity: bool                     # confirmed at the search's fidelity
    confirm_short: int = 0                  # patterns left out: some confirm seeds missing

    @property
    def winner(self) -> Confirmed | None:
        return self.confirmed[0] if self.confirmed else None

    @property
    def selection(self) -> "Selection | None":
        """The confirmed patterns compared with seeds as blocks (:func:`selection_of`)."""
        return selection_of(self.confirmed)

    @property
    def curse(self) -> "Curse | None":
        """The winner's curse of the pick a single run would have made (the confirmed search
        pattern of best brief accuracy); None before a search pattern is confirmed."""
        searched = [c for c in self.confirmed if c.repeat_of is not None]
        if not searched:
            return None
        pick = max(searched, key=lambda c: c.brief)
        log = next((c for c in self.confirmed if c.label == REFERENCE), None)
        nan = math.nan
        mean = pick.mean.mean.value
        return Curse(pick.name, pick.brief, mean, pick.brief - mean,
                     pick.brief - log.brief if log else nan,
                     mean - log.mean.mean.value if log else nan)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN as null); :meth:`from_json` reads it back."""
        return _plain({**dataclasses.asdict(self),
                       "confirmed": [c.to_json() for c in self.confirmed]})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Evidence":
        def confirmed(c: dict[str, Any]) -> Confirmed:
            return Confirmed(**{**_nan(c), "repeat_of": c["repeat_of"],
                                "accuracies": tuple(c["accuracies"]),
                                "mean": MeanCI.from_json(_nan(c["mean"])),
                                **{k: c[k] and Difference.from_json(_nan(c[k]))
                                   for k in ("vs_log", "vs_log_adjusted")}})
        best = data["best"] and BestRun(**_nan(data["best"]))
        return cls(Noise(**_nan(data["noise"])), best,
                   tuple(confirmed(c) for c in data["confirmed"]), data["confirm_fidelity"],
                   data["confirm_pending"], data["same_fidelity"],
                   data.get("confirm_short", 0))


def _nan(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON nulls of a flat record back to NaN."""
    return {k: math.nan if v is None else v for k, v in fields.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def is_search_fidelity(run: Run, fidelity: Fidelity | None) -> bool:
    return run.fidelity is None or (fidelity is not None and run.fidelity == fidelity.to_dict())


def evidence(study: optuna.Study, fidelity: Fidelity | None = None,
             complete: Recorded | None = None) -> Evidence:
    """The study's noise, best run and confirmed patterns. ``fidelity``: the search's (confirm
    runs at it also measure the noise); None counts only the search's own trials.
    ``complete``: :func:`recorded`, when already read."""
    if complete is None:
        complete = recorded(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    all_runs = runs(complete)
    search = [r for r in all_runs if r.kind in SEARCH_KINDS]
    confirm = [r for r in all_runs if r.kind == SlotKind.CONFIRM]
    noise = noise_of(search + [r for r in confirm if is_search_fidelity(r, fidelity)])
    best = None
    if search:
        top = max(search, key=lambda r: r.accuracy)
        within = sum(1 for r in search if r is not top and
                     r.accuracy >= top.accuracy - noise.seed_std)
        best = BestRun(top.number, top.accuracy, top.hash, noise.seed_std,
                       within if noise.measured else 0,
                       role_of(top.kind, None if top.label == "search" else top.label))
    pending = [r for r in (TrialRecord.from_trial(t) for t in study.get_trials(
        deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))) if r.is_confirm]
    finished, short = _finished(confirm, {r.seed for r in pending if r.seed is not None})
    return Evidence(noise, best, () if pending else confirmed_patterns(search, finished),
                    confirm[0].fidelity if confirm else None, len(pending),
                    bool(confirm) and is_search_fidelity(confirm[0], fidelity), short)


def _finished(confirm: list[Run], pending_seeds: set[int]) -> tuple[list[Run], int]:
    """The confirm runs of patterns that hold every confirm seed (every seed any confirm trial
    was queued with), and how many patterns miss some (a confirm trial failed for good)."""
    seeds = {r.seed for r in confirm} | pending_seeds
    held: dict[str, set[int]] = {}
    for r in confirm:
        held.setdefault(r.hash, set()).add(r.seed)
    whole = {h for h, s in held.items() if s >= seeds}
    return [r for r in confirm if r.hash in whole], len(held) - len(whole)


def confirmed_patterns(search: list[Run], confirm: list[Run]) -> tuple[Confirmed, ...]:
    """One entry per confirmed pattern (seeds pooled), best mean first."""
    groups: dict[str, list[Run]] = {}
    for run in confirm:
        groups.setdefault(run.hash, []).append(run)
    brief = {r.number: r.accuracy for r in search}
    template_brief: dict[str, list[float]] = {}
    for r in search:
        if r.kind == SlotKind.BASELINE:
            template_brief.setdefault(r.hash, []).append(r.accuracy)
    # a seed run twice counts once
    by_hash = {h: {r.seed: r.accuracy for r in g} for h, g in groups.items()}
    versus = _versus_log(groups, by_hash)
    out = []
    for hash_, group in groups.items():
        accuracies = tuple(by_hash[hash_][s] for s in sorted(by_hash[hash_]))
        first = group[0]
        if first.repeat_of is not None:
            chosen_by = brief.get(first.repeat_of, math.nan)
        else:
            chosen_by = float(np.mean(template_brief[hash_])) if hash_ in template_brief \
                else math.nan
        vs_log, adjusted = versus.get(hash_, (None, None))
        out.append(Confirmed(first.label, hash_, first.number, first.repeat_of, chosen_by,
                             accuracies, mean_ci(accuracies, (0.0, 1.0)), vs_log, adjusted))
    return tuple(sorted(out, key=lambda c: -c.mean.mean.value))


def _versus_log(groups: dict[str, list[Run]], by_hash: dict[str, dict[int, float]]
                ) -> dict[str, tuple[Difference, Difference]]:
    """Per confirmed pattern but log: its difference from log, seeds as blocks (every
    confirmed pattern holds the same seeds), the variance pooled over every confirmed pattern,
    and that interval at Holm's level over the patterns compared. Empty without log."""
    log = next((h for h, g in groups.items() if g[0].label == REFERENCE), None)
    if log is None or len(groups) < 2:
        return {}
    seeds = sorted(by_hash[log])
    hashes = [log, *(h for h in groups if h != log)]
    design = blocked_design([[by_hash[h][s] for s in seeds] for h in hashes])
    p_values = [design.p_difference(i, 0) for i in range(1, len(hashes))]
    return {h: (design.difference(i, 0), design.difference(i, 0, level))
            for i, h, level in zip(range(1, len(hashes)), hashes[1:], holm_levels(p_values))}


@dataclass(frozen=True)
class Versus:
    """The best searched pattern against one confirmed template, paired by seed with the
    pooled variance, and Holm-adjusted over the templates compared."""
    template: str
    diff: Difference               # 95%, unadjusted
    p_value: float
    holm: Estimate                 # the interval at Holm's level for this comparison
    holm_p: float


@dataclass(frozen=True)
class Selection:
    """The confirmed patterns as a patterns x seeds block design: whether they differ at all
    (the omnibus F test), the best searched pattern against every confirmed template, and its
    lead over the best template with and without the winner's selection bias."""
    searched: str                  # the best searched pattern's name
    residual_std: float            # pooled over every confirmed pattern
    df: int
    omnibus_p: float               # F test: do the confirmed patterns differ at all?
    versus: tuple[Versus, ...]     # best template first (by confirmed mean)
    naive_lead: float              # best searched minus best template, on every seed
    cross_fit_lead: float          # both picked on half the seeds, measured on the other


def selection_of(confirmed: Sequence[Confirmed]) -> Selection | None:
    """:class:`Selection` of confirmed patterns that share their seeds (every confirmed
    pattern holds every confirm seed); None without both a searched pattern and a template,
    or with fewer than two seeds."""
    searched = [i for i, c in enumerate(confirmed) if c.label == "search"]
    templates = [i for i, c in enumerate(confirmed) if c.label != "search"]
    seeds = {len(c.accuracies) for c in confirmed}
    if not searched or not templates or len(seeds) != 1 or seeds.pop() < 2:
        return None
    table = np.array([c.accuracies for c in confirmed])
    design = blocked_design(table)
    best = max(searched, key=lambda i: design.means[i])
    ranked = sorted(templates, key=lambda i: -design.means[i])
    p_values = [design.p_difference(best, t) for t in ranked]
    versus = tuple(
        Versus(confirmed[t].label, design.difference(best, t), p,
               design.difference(best, t, level).diff, adjusted)
        for t, p, level, adjusted in zip(ranked, p_values, holm_levels(p_values),
                                         holm(p_values)))
    return Selection(confirmed[best].name, design.residual_std, design.df, design.p_value,
                     versus, float(design.means[best] - design.means[ranked[0]]),
                     cross_fit_lead(table, searched, templates))


class Pick(StrEnum):
    """What the answer to "which pattern should I train?" rests on."""
    NONE = "none"                  # no completed trial
    SINGLE_RUN = "single run"      # the best single run: nothing confirmed
    SEARCHED = "searched"          # a searched pattern ahead of every confirmed template
    TEMPLATE = "template"          # a template: no searched pattern separated from it


@dataclass(frozen=True)
class Answer:
    """Which pattern to train, and the sentence that says why."""
    pick: Pick
    name: str                      # "trial N" or the template's name ("" for NONE)
    hash: str
    sentence: str


def answer(ev: Evidence) -> Answer:
    """Which pattern to train: the best confirmed searched pattern when it is ahead of the best
    confirmed template once corrected for picking the best of the confirmed patterns, else
    that template (as good as far as the seeds tell, and simpler to describe); before a
    confirm stage, the best single run, said to be unconfirmed."""
    if ev.winner is None:
        if ev.best is None:
            return Answer(Pick.NONE, "", "", "Nothing to train yet: no trial has completed.")
        b = ev.best
        then = ("its confirm trials are still running" if ev.confirm_pending else
                "`skipnas confirm CONFIG` re-trains the top patterns and the templates with "
                "more seeds")
        return Answer(Pick.SINGLE_RUN, f"trial {b.number}", b.hash,
                      f"Train trial {b.number}'s pattern ({b.hash}) for now: it is the best "
                      f"single run ({b.accuracy:.4f}), unconfirmed; {then}.")
    templates = [c for c in ev.confirmed if c.label != "search"]   # best mean first
    searched = [c for c in ev.confirmed if c.label == "search"]
    if not templates:
        w = ev.winner
        return Answer(Pick.SEARCHED, w.name, w.hash,
                      f"Train {w.name}'s pattern ({w.hash}): the best confirmed mean "
                      f"({w.mean.mean.value:.4f} over {w.mean.n} seeds); no template was "
                      f"confirmed beside it, so nothing says a template would do as well.")
    t = templates[0]
    if not searched or searched[0].mean.mean.value <= t.mean.mean.value:
        ahead = "" if not searched else \
            f" (the best searched pattern, {searched[0].name}, scored " \
            f"{searched[0].mean.mean.value:.4f})"
        return Answer(Pick.TEMPLATE, t.label, t.hash,
                      f"Train the {t.label} template: no searched pattern has a higher "
                      f"confirmed mean than its {t.mean.mean.value:.4f} over {t.mean.n} "
                      f"seeds{ahead}.")
    s, sel = searched[0], ev.selection
    if sel is None:   # fewer than two shared seeds: no interval to judge the lead by
        return Answer(Pick.TEMPLATE, t.label, t.hash,
                      f"Train the {t.label} template: the best searched pattern, {s.name}, "
                      f"scored {s.mean.mean.value - t.mean.mean.value:+.4f} more, on too few "
                      f"shared seeds for an interval; confirm with more seeds.")
    v = sel.versus[0]
    how = (f"seeds paired, the variance pooled over the {len(ev.confirmed)} confirmed "
           f"patterns ({sel.df} df), Holm over the {len(sel.versus)} templates")
    lead = f"{v.diff.diff.value:+.4f} {v.holm.interval('+.4f')} ({how})"
    if v.holm.low > 0:
        return Answer(Pick.SEARCHED, s.name, s.hash,
                      f"Train {s.name}'s pattern ({s.hash}): it is ahead of the best template, "
                      f"{t.label}, by {lead}; picked and measured on separate halves of the "
                      f"seeds its lead is {sel.cross_fit_lead:+.4f}.")
    differ = "" if not sel.omnibus_p >= 0.05 else \
        f"; the confirmed patterns do not differ detectably at all (F test, p = " \
        f"{sel.omnibus_p:.2f})"
    return Answer(Pick.TEMPLATE, t.label, t.hash,
                  f"Train the {t.label} template: the best searched pattern, {s.name}, is "
                  f"ahead by {lead}, not separated from it{differ}; the template is as good "
                  f"as far as {t.mean.n} seeds tell, and simpler to describe.")


def describe_best(ev: Evidence) -> str:
    """One line on the best single run and its noise, e.g. "best 0.650 (one run, SE 0.008);
    9 trials are within 1 SE of it: unconfirmed"."""
    best = ev.best
    if best is None:
        return "no completed trial"
    role = f" ({best.role})" if best.role else ""
    head = f"best {best.accuracy:.4f} (trial {best.number}{role}, one run"
    if not ev.noise.measured:
        return (head + "; noise not measured: set [noise] repeats or baseline seeds)"
                + ("" if ev.winner else ": unconfirmed"))
    line = f"{head}, SE {best.se:.4f}); {best.within_se} trials are within 1 SE of it"
    return line + ("" if ev.winner else ": unconfirmed")


def describe_noise(noise: Noise) -> str:
    if not noise.measured:
        return "noise: not measured (no pattern trained with two seeds at the search's fidelity)"
    rho = "" if math.isnan(noise.seed_spearman) else \
        f"; two seeds rank them with Spearman {noise.seed_spearman:+.2f}"
    return (f"noise: seed std {noise.seed_std:.4f} per trial ({noise.patterns} patterns with "
            f"repeated seeds, {noise.df} df){rho}")


def describe_curse(ev: Evidence) -> str | None:
    """One line on the winner's curse, when a search pattern is confirmed."""
    c = ev.curse
    if c is None:
        return None
    line = f"winner's curse: the brief pick ({c.pick}) scored {c.brief:.4f} once"
    if ev.same_fidelity:
        line += f" and {c.confirmed:.4f} confirmed ({-c.drop:+.4f})"
    if not (math.isnan(c.brief_lead) or math.isnan(c.confirmed_lead)):
        line += (f"; its lead over log: {c.brief_lead:+.4f} brief, {c.confirmed_lead:+.4f} "
                 f"confirmed")
    return line


def describe_winner(ev: Evidence) -> str:
    """One line on the confirmed winner, or what is missing."""
    w = ev.winner
    short = "" if not ev.confirm_short else \
        f"{ev.confirm_short} patterns miss confirm seeds (their trials failed)"
    if w is None:
        if ev.confirm_pending:
            return (f"confirmed: none yet ({ev.confirm_pending} confirm trials queued or "
                    f"running; `skipnas confirm CONFIG` finishes them)")
        if short:
            return f"confirmed: none ({short})"
        return "confirmed: none (run `skipnas confirm CONFIG`)"
    m = w.mean
    shown = m.mean.interval(".4f") if m.n >= MIN_INTERVAL_SEEDS else \
        "(too few seeds for an interval)"
    line = f"confirmed best: {w.name} (pattern {w.hash}) {m.mean.value:.4f} {shown} over " \
           f"{m.n} seeds"
    if w.vs_log is not None and w.vs_log_adjusted is not None:
        d, a = w.vs_log.diff, w.vs_log_adjusted.diff
        line += f"; vs log {d.value:+.4f} {d.interval('+.4f')}"
        if a.low > 0:
            line += f": beats log, also corrected for the comparisons {a.interval('+.4f')}"
        elif d.low > 0:
            line += f": ahead of log, but not once corrected for picking the best of the " \
                    f"confirmed patterns (Holm {a.interval('+.4f')})"
        else:
            line += ": not separated from log"
    elif w.label == REFERENCE:
        line += "; no searched pattern has a higher confirmed mean than log"
    return line + (f"; left out: {short}" if short else "")
