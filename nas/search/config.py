"""Study configs: TOML files in studies/ -> frozen dataclasses, validated here; and the summary
of its config a study stores, which a config is checked against."""
from __future__ import annotations

import dataclasses
import functools
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from search_spaces import (
    BLOCK_OUTPUTS,
    DEFAULT_STYLE,
    SEARCH_SPACES,
    STYLES,
    TEMPLATES,
    PatternError,
    SearchSpace,
    dense_connections,
    make_space,
)

from ..engine.memory import check_fits, log_connections, machine_memory
from ..engine.run_config import ArchConfig, DataConfig, TrainConfig
from ..errors import ConfigError, UserError
from ..settings import from_dict, require, to_dict
from .record import OLD_STYLE
from .storage.urls import NAME_RULE, default_storage_url, is_valid_name, mask_url
from .strategy.samplers import PrunerConfig, SamplerConfig

if TYPE_CHECKING:
    import optuna

MAX_TRIALS = 1_000_000  # search trials per study: more is a mistake, or several studies
MAX_BASELINES = 10_000  # baseline trials (templates x seeds x ...): more is a typo
# What reading a study takes per trial (analyze and report, which hold every record: 0.94 GB
# at 100k trials, benchmarks/scale.py), rounded up: a study must fit this machine's memory.
STUDY_BYTES_PER_TRIAL = 10_000
VAL_ACCURACY = "val_accuracy"  # the objective's name: the accuracy on the held-out validation split


@dataclass(frozen=True)
class SpaceConfig:
    name: str = "offsets"
    layers: tuple[int, ...] = (24,)
    budget: int | None = None          # None: the log template's count at these layers
    templates: tuple[str, ...] | None = None  # `templates` space only: the candidates
    style: str = DEFAULT_STYLE         # network style: per_block, v1 or v2

    def __post_init__(self):
        require(self.name in SEARCH_SPACES, "name", SEARCH_SPACES.unknown(self.name))
        require(self.style in STYLES, "style", STYLES.unknown(self.style))
        require(len(self.layers) >= 1 and min(self.layers) >= 1, "layers",
                "must be a non-empty list of positive integers")
        require(self.templates is None or self.name == "templates", "templates",
                "only the 'templates' search space takes a template list")
        for t in self.templates or ():
            require(t in TEMPLATES, "templates", TEMPLATES.unknown(t))

    def build(self) -> SearchSpace:
        """The search space; built once per config (v1/v2 offsets spaces cost N patterns)."""
        return self._space

    @functools.cached_property
    def _space(self) -> SearchSpace:
        extra = {"templates": self.templates} if self.templates is not None else {}
        try:
            return make_space(self.name, self.layers, self.budget, self.style, **extra)
        except PatternError as e:
            raise UserError(f"search_space: {e}") from None


@dataclass(frozen=True)
class BaselinesConfig:
    """Fixed template trials trained alongside the search, once per template, style, budget
    mode, block output convention and seed. Budget "exact": at the study budget (in another
    style, or with another block output: at log's count in that style and convention) where the
    template can meet it, else at its own count; "authors": at its own count with the authors'
    K."""
    templates: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    styles: tuple[str, ...] | None = None      # None: the search space's style
    budgets: tuple[str, ...] = ("exact",)
    block_outputs: tuple[str, ...] = ("template",)  # "all": block outputs read every node

    def __post_init__(self):
        for t in self.templates:
            require(t in TEMPLATES, "templates", TEMPLATES.unknown(t))
        require(len(self.seeds) >= 1, "seeds", "needs at least one seed")
        for s in self.styles or ():
            require(s in STYLES, "styles", STYLES.unknown(s))
        require(len(self.budgets) >= 1 and set(self.budgets) <= {"exact", "authors"},
                "budgets", "use a non-empty list of 'exact' and 'authors'")
        require(len(self.block_outputs) >= 1, "block_outputs", "needs at least one convention")
        for o in self.block_outputs:
            require(o in BLOCK_OUTPUTS, "block_outputs", BLOCK_OUTPUTS.unknown(o))

    @property
    def count(self) -> int:
        """The baseline trials asked: templates x seeds x styles x budgets x block outputs."""
        return len(self.templates) * len(self.seeds) * len(self.styles or (None,)) * \
            len(self.budgets) * len(self.block_outputs)


@dataclass(frozen=True)
class BenchConfig:
    """A tabular benchmark (`skipnas bench build`): patterns of the search space, each trained
    once per seed. Empty ``seeds``: the config is not a benchmark."""
    seeds: tuple[int, ...] = ()
    patterns: int | None = None        # None: every pattern (listable spaces); N: a sample
    sample_seed: int = 0

    def __post_init__(self):
        require(len(set(self.seeds)) == len(self.seeds), "seeds", "must be distinct")
        require(self.patterns is None or 1 <= self.patterns <= MAX_TRIALS, "patterns",
                f"must be in 1..{MAX_TRIALS} (leave it out for every pattern)")

    @property
    def enabled(self) -> bool:
        return bool(self.seeds)


@dataclass(frozen=True)
class NoiseConfig:
    """Search patterns trained again with the next seed (training.seed + 1), as ordinary slots
    after the search's: the earliest completed search patterns not yet repeated. Their pairs
    measure the noise of one trial (with any baseline or benchmark seeds)."""
    repeats: int = 0

    def __post_init__(self):
        require(self.repeats >= 0, "repeats", "must be >= 0")


@dataclass(frozen=True)
class Fidelity:
    """How much a trial trains: epochs (or steps), training images (None: all), validation
    images, and the batch size (None: the training's); ``eval_test``: the trained network is
    also scored on the test split (a fidelity study's reference)."""
    epochs: int | None
    steps: int | None
    train_size: int | None
    val_size: int | float
    batch_size: int | None = None
    eval_test: bool = False

    def to_dict(self) -> dict[str, Any]:
        # batch_size and eval_test only where set: records stored before they existed have
        # none and mean this
        data = dataclasses.asdict(self)
        if self.batch_size is None:
            del data["batch_size"]
        if not self.eval_test:
            del data["eval_test"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Fidelity":
        return cls(**data)

    def describe(self) -> str:
        budget = f"{self.steps} steps" if self.steps is not None else \
            f"{self.epochs} epoch{'' if self.epochs == 1 else 's'}"
        images = "all" if self.train_size is None else str(self.train_size)
        batch = "" if self.batch_size is None else f", batch {self.batch_size}"
        test = ", scored on the test split" if self.eval_test else ""
        return (f"{budget}, {images} training images, {self.val_size:g} validation "
                f"images{batch}{test}")


@dataclass(frozen=True)
class FidelityLevel:
    """One fidelity of a fidelity study, by name: overrides of the study's data and training
    settings (unset: the study's; ``train_size = "all"``: the whole training split)."""
    name: str
    epochs: int | None = None
    train_size: int | Literal["all"] | None = None
    val_size: int | float | None = None
    batch_size: int | None = None

    def __post_init__(self):
        require(bool(self.name.strip()), "name", "must not be empty")

    def over(self, base: Fidelity) -> Fidelity:
        """This level's fidelity: ``base`` with its overrides."""
        train_size = base.train_size if self.train_size is None else \
            None if self.train_size == "all" else self.train_size
        return Fidelity(self.epochs if self.epochs is not None else base.epochs,
                        None if self.epochs is not None else base.steps, train_size,
                        self.val_size if self.val_size is not None else base.val_size,
                        self.batch_size if self.batch_size is not None else base.batch_size)


LEVEL_SEEDS = 1000  # level i of a fidelity study trains seeds training.seed + 1000 i + 0, 1, ...


@dataclass(frozen=True)
class FidelityConfig:
    """`skipnas fidelity`: one set of patterns trained at every level (cheapest first; the
    last is the reference whose ranking the others are judged against, scored on the test
    split), ``seeds`` seeds each and ``top_seeds`` at the last level. Each level trains seeds
    of its own (level i: training.seed + 1000 i + 0, 1, ...), so no two levels share initial
    weights. The patterns: the ``templates`` at the space's budget, the ``bench_best`` best of
    the benchmark in ``bench`` by mean accuracy, and ``spread`` more of the space at evenly
    spaced quantiles of mean backprop distance. Empty ``levels``: the config is not a fidelity
    study."""
    levels: tuple[FidelityLevel, ...] = ()
    seeds: int = 3
    top_seeds: int = 3
    templates: tuple[str, ...] = ("log", "nearest", "evenly_spaced")
    bench: str = ""
    bench_best: int = 0
    spread: int = 0
    spread_seed: int = 0
    target: float = 0.8       # one run's Spearman with the reference a recommended level reaches

    def __post_init__(self):
        names = [level.name for level in self.levels]
        require(len(set(names)) == len(names), "levels", "level names must be distinct")
        # Three levels: two to compare with the reference; three seeds: three seed pairs, so
        # that a level's seed-to-seed agreement is not one pair's.
        require(not self.levels or 3 <= len(self.levels) <= 100, "levels",
                "needs 3..100 levels (the last is the reference)")
        require(3 <= self.seeds <= 100, "seeds", "must be in 3..100 (seed-to-seed agreement "
                "needs several seed pairs)")
        require(self.seeds <= self.top_seeds <= 100, "top_seeds", "must be in seeds..100")
        for t in self.templates:
            require(t in TEMPLATES, "templates", TEMPLATES.unknown(t))
        require(0 <= self.bench_best <= 1000, "bench_best", "must be in 0..1000")
        require(not self.bench_best or bool(self.bench), "bench",
                "bench_best needs a benchmark folder")
        require(0 <= self.spread <= 1000, "spread", "must be in 0..1000")
        require(0 < self.target <= 1, "target", "must be in (0, 1]")

    @property
    def enabled(self) -> bool:
        return bool(self.levels)

    def seeds_at(self, level: int) -> int:
        """How many seeds level ``level`` (an index) trains: ``top_seeds`` at the last."""
        return self.top_seeds if level == len(self.levels) - 1 else self.seeds

    def level_seeds(self, level: int, base: int) -> list[int]:
        """The seeds level ``level`` (an index) trains, from the study's seed ``base``: its
        own block of :data:`LEVEL_SEEDS`, disjoint from every other level's."""
        start = base + LEVEL_SEEDS * level
        return [(start + k) % 2 ** 32 for k in range(self.seeds_at(level))]


@dataclass(frozen=True)
class ConfirmConfig:
    """`skipnas confirm`: the ``top`` distinct search patterns (best brief accuracy first) and
    the ``baselines`` templates, each re-trained with ``seeds`` seeds (training.seed + 1 ..
    + seeds), optionally at a higher fidelity (``epochs``, ``train_size``, ``val_size``;
    unset: the study's own)."""
    top: int = 5
    seeds: int = 3
    baselines: tuple[str, ...] = ("log",)
    epochs: int | None = None
    train_size: int | None = None
    val_size: int | float | None = None

    def __post_init__(self):
        require(1 <= self.top <= 100, "top", "must be in 1..100")
        require(2 <= self.seeds <= 100, "seeds", "must be in 2..100 (a mean's interval needs "
                "two seeds)")
        for t in self.baselines:
            require(t in TEMPLATES, "baselines", TEMPLATES.unknown(t))


@dataclass(frozen=True)
class StudyConfig:
    name: str
    trials: int = 12                  # search-space trials (baselines come on top)
    seed: int = 0
    storage: str = ""                 # "": sqlite:///studies/<name>.db
    heartbeat_seconds: int = 10       # a worker silent for 3x this is dead: its trial is retried
    workers: int = 1                  # worker processes per machine (0: per CPU core / 4 per GPU)
    search_space: SpaceConfig = field(default_factory=SpaceConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    architecture: ArchConfig = field(default_factory=ArchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)

    def __post_init__(self):
        require(is_valid_name(self.name), "name", NAME_RULE)
        require(0 <= self.trials <= MAX_TRIALS, "trials", f"must be in 0..{MAX_TRIALS}")
        require(0 <= self.seed < 2 ** 32, "seed", "must be in 0..2**32-1")
        require(1 <= self.heartbeat_seconds <= 3600, "heartbeat_seconds",
                "must be in 1..3600 (seconds)")
        require(self.baselines.count <= MAX_BASELINES, "baselines.seeds",
                f"{self.baselines.count} baseline trials (templates x seeds x styles x budgets x "
                f"block outputs); at most {MAX_BASELINES}")
        require(0 <= self.workers <= 256, "workers", "must be in 0..256 (0: one per CPU core "
                "or GPU)")
        require(not (self.multi_objective and self.pruner.name != "none"), "pruner.name",
                "pruning needs one objective; use pruner 'none' with nsga2")
        require(not (self.sampler.name == "cmaes" and self.search_space.name == "templates"),
                "sampler.name", "cmaes needs a continuous space (offsets or free), not templates")
        require(self.noise.repeats <= self.trials, "noise.repeats",
                f"must be <= trials ({self.trials}): it repeats search patterns")
        try:
            self.at_fidelity(self.confirm_fidelity)  # confirm's overrides are valid settings
        except UserError as e:
            raise UserError(f"confirm.{e}") from None
        fidelities = [replace(f, eval_test=False) for _, f in self.fidelity_levels]
        require(len(set(fidelities)) == len(fidelities), "fidelity.levels",
                "two levels train at the same fidelity")
        for i, level in enumerate(self.fidelity.levels):
            try:
                self.at_fidelity(level.over(self.search_fidelity))
            except UserError as e:
                raise UserError(f"fidelity.levels[{i}] ({level.name}): {e}") from None
        info = self.data.info  # config_from_dict takes the network's input and classes from it
        require((self.architecture.input_shape, self.architecture.num_classes) ==
                (info.input_shape, info.num_classes), "architecture",
                f"input {self.architecture.input_shape} and {self.architecture.num_classes} "
                f"classes, but {self.data.name} has {info.input_shape} and {info.num_classes}")
        space = self.search_space
        dense = sum(dense_connections(L) for L in space.layers)
        budget = space.budget or sum(log_connections(L) for L in space.layers)
        batch = max([self.training.batch_size] + [f.batch_size for _, f in self.fidelity_levels
                                                   if f.batch_size is not None])
        check_fits(space.layers, min(budget, dense), self.architecture, batch,
                   "search_space.layers with architecture")

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage_url(self.name)

    @property
    def multi_objective(self) -> bool:
        return self.sampler.name == "nsga2"

    @property
    def metric_names(self) -> list[str]:
        """The objectives' names, as the study stores them for optuna-dashboard."""
        return [VAL_ACCURACY, self.sampler.second_objective] if self.multi_objective \
            else [VAL_ACCURACY]

    @property
    def search_fidelity(self) -> Fidelity:
        """The search's fidelity (its data and training settings)."""
        return Fidelity(self.training.epochs, self.training.steps, self.data.train_size,
                        self.data.val_size)

    @property
    def fidelity_levels(self) -> list[tuple[str, Fidelity]]:
        """The fidelity study's levels by name, cheapest first (the last: the reference, scored
        on the test split that no level validates on); a batch size equal to the training's is
        the training's (None)."""
        def own(f: Fidelity) -> Fidelity:
            return replace(f, batch_size=None) if f.batch_size == self.training.batch_size else f
        last = len(self.fidelity.levels) - 1
        return [(level.name, replace(own(level.over(self.search_fidelity)), eval_test=i == last))
                for i, level in enumerate(self.fidelity.levels)]

    @property
    def confirm_fidelity(self) -> Fidelity:
        """The confirm stage's fidelity: the search's, with ``[confirm]``'s overrides."""
        c, f = self.confirm, self.search_fidelity
        return Fidelity(c.epochs if c.epochs is not None else f.epochs,
                        None if c.epochs is not None else f.steps,
                        c.train_size if c.train_size is not None else f.train_size,
                        c.val_size if c.val_size is not None else f.val_size)

    @property
    def confirm_templates(self) -> tuple[str, ...]:
        """The templates confirmed beside the search's top patterns: ``confirm.baselines`` and
        every template the search trained as a baseline, so the winner meets each of them."""
        return tuple(dict.fromkeys((*self.confirm.baselines, *self.baselines.templates)))

    def confirm_plan(self) -> str:
        """What `skipnas confirm` trains, in words."""
        c = self.confirm
        templates = self.confirm_templates
        return (f"top {c.top} search patterns and {', '.join(templates) or 'no template'}, "
                f"{c.seeds} seeds each, at {self.confirm_fidelity.describe()}")

    def at_fidelity(self, fidelity: Fidelity) -> tuple[DataConfig, TrainConfig]:
        """The data and training settings of a trial at ``fidelity``."""
        batch_size = self.training.batch_size if fidelity.batch_size is None else \
            fidelity.batch_size
        return (replace(self.data, train_size=fidelity.train_size, val_size=fidelity.val_size),
                replace(self.training, epochs=fidelity.epochs, steps=fidelity.steps,
                        batch_size=batch_size))


def check_study_size(cfg: StudyConfig) -> None:
    """Refuse, before a study is created, one whose analysis would not fit this machine's
    memory (workers elsewhere only run its trials: they do not check)."""
    slots = cfg.trials + cfg.baselines.count + cfg.noise.repeats
    if slots * STUDY_BYTES_PER_TRIAL > machine_memory():
        raise ConfigError(f"trials: {slots:,} trials with the baselines and noise repeats: "
                          f"analyzing them takes about "
                          f"{slots * STUDY_BYTES_PER_TRIAL / 2 ** 30:.1f} GiB, more than this "
                          f"machine's {machine_memory() / 2 ** 30:.0f} GiB; run fewer, or split "
                          f"the search into several studies")


def config_from_dict(raw: dict[str, Any], where: str = "config") -> StudyConfig:
    """Validate a parsed TOML document; errors read ``"<where>: <section>.<key>: <problem>"``."""
    try:
        for key in ("input_shape", "num_classes"):
            if key in raw.get("architecture", {}):
                raise UserError(f"architecture.{key}: set by the dataset, not the config")
        cfg = from_dict(StudyConfig, _with_data_shape(raw))
        cfg.search_space.build()  # budget feasibility, before anything runs
        return cfg
    except UserError as e:
        raise ConfigError(f"{where}: {e}") from None


def _with_data_shape(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the network's input shape and classes taken from its dataset: the user's
    own data is read for them, so bad data is refused here (a bad data section is left for
    ``from_dict`` to report)."""
    arch = raw.get("architecture", {})
    try:
        data = from_dict(DataConfig, raw.get("data", {}), "data")
    except UserError:
        return raw
    if not isinstance(arch, dict):
        return raw
    try:
        data.check_root()
    except UserError as e:
        raise UserError(f"data.{e}") from None
    info = data.info
    return {**raw, "architecture": {**arch, "input_shape": list(info.input_shape),
                                    "num_classes": info.num_classes}}


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file."""
    return config_from_dict(read_toml(path), str(path))


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML file at ``path``; unreadable, not UTF-8 or not TOML is one clear error."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None
    except ValueError as e:  # an integer of more digits than Python converts
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


# What a study stores of its config (its `config` user attr), read back and checked against.
CONFIG_ATTR = "config"  # the study user attr that holds config_summary()
# Settings that may differ between the machines that share a study, and between runs of it
# (fidelity.target judges the report only; studies made before it was left out store it).
PER_MACHINE = ("training.device", "training.compile", "training.threads", "data.root")
PER_RUN = ("fidelity.target",)
# Keys added to the stored config after studies were made, with the value those studies ran.
ADDED_LATER = {"sampler.score": "-mean_distance", "data.image_size": None,
               "architecture.stem": "conv"}


def check_config(study: optuna.Study, cfg: StudyConfig) -> None:
    """Refuse a config whose settings differ from those the study was made with, naming
    every differing key (a worker with other settings would fill the study with other
    trials)."""
    stored = stored_config(study) or {}
    wanted = config_summary(cfg, cfg.search_space.build())

    def flat(summary: dict[str, Any]) -> dict[str, Any]:
        return {f"{section}.{key}": value for section, table in summary.items()
                for key, value in table.items()}

    a, b = {**ADDED_LATER, **flat(stored)}, flat(wanted)
    differ = [k for k in sorted(set(a) | set(b))
              if k not in PER_MACHINE + PER_RUN and a.get(k) != b.get(k)]
    if differ:
        shown = "; ".join(f"{k} is {a.get(k)!r} in the study, {b.get(k)!r} here"
                          for k in differ[:4])
        more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
        raise UserError(f"study {cfg.name!r} in {mask_url(cfg.storage_url)} was made with other "
                        f"settings: {shown}{more}. Use its config, or another study name.")


def config_summary(cfg: StudyConfig, space: SearchSpace) -> dict[str, Any]:
    """What a study stores of its config (its `config` study attr)."""
    bench = {"bench": to_dict(cfg.bench)} if cfg.bench.enabled else {}
    # target only judges the report: it may change between runs of one fidelity study
    fidelity = {"fidelity": {k: v for k, v in to_dict(cfg.fidelity).items() if k != "target"}} \
        if cfg.fidelity.enabled else {}
    return {"search_space": space.describe(), "architecture": to_dict(cfg.architecture),
            "data": to_dict(cfg.data), "training": to_dict(cfg.training),
            "sampler": to_dict(cfg.sampler), "pruner": to_dict(cfg.pruner), **bench,
            **fidelity}


def stored_config(study: optuna.Study) -> dict[str, Any] | None:
    """The config summary the study was created with (None before it is set)."""
    return study.user_attrs.get(CONFIG_ATTR)


def study_style(study: optuna.Study) -> str:
    """The network style of the study's search space (studies made before styles: per_block)."""
    return (stored_config(study) or {}).get("search_space", {}).get("style", OLD_STYLE)


def search_fidelity(study: optuna.Study) -> Fidelity | None:
    """The fidelity the study searches at, from its stored config (None: not stored, or a
    study filled by a user's own objective, whose config holds its search space only)."""
    stored = stored_config(study)
    if stored is None or "training" not in stored:
        return None
    data, training = stored["data"], stored["training"]
    return Fidelity(training.get("epochs"), training.get("steps"), data.get("train_size"),
                    data.get("val_size"))
