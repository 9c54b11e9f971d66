"""Pattern spec: the JSON that `export` writes and `train` reads (docs/concepts.md). Torch-free:
only :func:`make_spec` builds a network, to measure it."""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from search_spaces import Derivation, Pattern, PatternError, at_depth, distance_stats

from ..errors import SpecError, UserError
from ..settings import from_dict, to_dict
from .run_config import ArchConfig
from .stems import default_stem

FORMAT_VERSION = 1
METRIC_KEYS = ("connections", "mbd", "mean_distance", "params", "flops")
ORIGIN_TYPES = {"study": str, "trial": int, "accuracy": float, "template": str, "k": int,
                "dataset": str, "seed": int, "budget": str, "confirmed": dict,
                "scaled_from": str, "changed": dict, "source": dict, "normalise": dict}
PATTERN_KEYS = ("blocks", "style", "stages")  # the pattern's own fields, inline in the spec


@dataclass(frozen=True)
class PatternSpec:
    """A pattern, its architecture, its metrics and where it came from."""

    pattern: Pattern
    arch: ArchConfig
    metrics: dict[str, float]
    origin: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return self.pattern.hash

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "hash": self.hash, **self.pattern.to_dict(),
                "architecture": to_dict(self.arch), "metrics": dict(self.metrics),
                "origin": dict(self.origin), "origin_digest": origin_digest(self.origin)}

    def to_json(self) -> str:
        # NaN or infinity is not JSON: a bug upstream, never a file other tools cannot read.
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    @property
    def digest(self) -> str:
        """Names this exact spec, as its hash names its pattern: sha256 of its canonical JSON
        (pattern, architecture, metrics and origin), 16 hex digits."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def scaled(self, *, layers: Sequence[int] | None = None, in_channels: int | None = None,
               input_size: int | tuple[int, int] | None = None,
               **arch: Any) -> "PatternSpec":
        """The pattern in a network chosen for another target: a new spec, its metrics measured
        anew, its origin naming this spec (``scaled_from``: its digest) and what changed.

        ``arch`` changes ArchConfig fields (``growth``, ``num_classes``, ``stem``,
        ``input_shape``, ...); ``in_channels`` and ``input_size`` (a side, or (H, W)) change the
        input shape; ``layers`` (one number per stage) re-derives the pattern at those depths by
        its rule (a template or offsets pattern; a free one is refused: SpecError). Unless named,
        the stem is the one for the new input size (:func:`~nas.engine.stems.default_stem`).
        Nothing changed: this spec itself."""
        pattern, target, rule = self._scale(layers, in_channels, input_size, arch)
        if (pattern, target) == (self.pattern, self.arch):
            return self
        old, new = to_dict(self.arch), to_dict(target)
        changed: dict[str, Any] = {k: {"from": old[k], "to": new[k]} for k in old
                                   if old[k] != new[k]}
        if rule is not None:
            changed["layers"] = {"from": list(self.pattern.stages), "to": list(pattern.stages)}
            changed["pattern"] = {"from": self.hash, "to": pattern.hash, "rule": rule.describe()}
        return make_spec(pattern, target, {"scaled_from": self.digest, "changed": changed,
                                           "source": dict(self.origin)})

    def scaled_network(self, **changes: Any) -> tuple[Pattern, ArchConfig]:
        """The pattern and architecture :meth:`scaled` would give, without measuring them."""
        layers, channels, size = (changes.pop(k, None)
                                  for k in ("layers", "in_channels", "input_size"))
        pattern, arch, _ = self._scale(layers, channels, size, changes)
        return pattern, arch

    def _scale(self, layers: Sequence[int] | None, in_channels: int | None,
               input_size: int | tuple[int, int] | None,
               arch: dict[str, Any]) -> tuple[Pattern, ArchConfig, Derivation | None]:
        shape = arch.pop("input_shape", self.arch.input_shape)
        if in_channels is not None or input_size is not None:
            side = (input_size, input_size) if isinstance(input_size, int) else input_size
            shape = (in_channels or shape[0], *(side or shape[1:]))
        arch["input_shape"] = tuple(shape)
        pattern, rule = self.pattern, None
        if layers is not None:
            try:
                pattern, rule = at_depth(self.pattern, layers, self.origin.get("template"),
                                         self.origin.get("k"))
            except PatternError as e:
                raise SpecError(f"layers: {e}") from None
        unchanged = pattern == self.pattern and \
            all(getattr(self.arch, k) == v for k, v in arch.items())
        if "stem" not in arch and not unchanged:
            # The network is chosen for the target: its stem too, unless named. A stride asked
            # for names the one stem that takes it.
            arch["stem"] = "conv" if "stem_stride" in arch else default_stem(arch["input_shape"])
        if arch.get("stem", self.arch.stem) != "conv":
            arch.setdefault("stem_stride", 1)  # the others have their own stride
        try:
            return pattern, replace(self.arch, **arch), rule
        except UserError as e:
            raise SpecError(f"architecture.{e}") from None

    @classmethod
    def from_dict(cls, data: Any, source: str = "spec") -> "PatternSpec":
        """Validate everything; errors name the bad field, prefixed with ``source``."""
        check = _Checker(source)
        check.fields(data)
        pattern = check.pattern(data)
        arch = check.arch(data["architecture"])
        metrics = check.metrics(data["metrics"], pattern)
        origin = check.origin(data.get("origin", {}), data.get("origin_digest"))
        return cls(pattern, arch, metrics, origin)

    @classmethod
    def load(cls, path: str | Path) -> "PatternSpec":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise SpecError(f"{path}: cannot read spec ({e.strerror})") from None
        except UnicodeDecodeError:
            raise SpecError(f"{path}: not UTF-8 text") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        except RecursionError:
            raise SpecError(f"{path}: JSON nested too deeply") from None
        except ValueError as e:  # an integer of more digits than Python converts
            raise SpecError(f"{path}: not a readable spec ({e})") from None
        return cls.from_dict(data, str(path))


def pattern_metrics(pattern: Pattern) -> dict[str, float]:
    """The torch-free metrics of a pattern: connections, MBD, mean distance."""
    stats = distance_stats(pattern)
    return {"connections": pattern.connections, "mbd": stats.mbd,
            "mean_distance": stats.mean}


class _Checker:
    """The steps of :meth:`PatternSpec.from_dict`; each raises SpecError naming its field."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, fieldname: str, problem: str) -> SpecError:
        return SpecError(f"{self.source}: {fieldname}: {problem}")

    def fields(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise self.fail("(top level)", "expected a JSON object")
        known = {"format_version", "hash", *PATTERN_KEYS, "architecture", "metrics", "origin",
                 "origin_digest"}
        for key in sorted(set(data) - known):
            raise self.fail(key, f"unknown field (known: {', '.join(sorted(known))})")
        for key in ("format_version", "blocks", "architecture", "metrics"):
            if key not in data:
                raise self.fail(key, "missing")
        if data["format_version"] != FORMAT_VERSION:
            raise self.fail("format_version", f"{data['format_version']!r} is not supported "
                                              f"(this skipnas reads {FORMAT_VERSION})")

    def pattern(self, data: dict[str, Any]) -> Pattern:
        try:
            pattern = Pattern.from_dict({k: data[k] for k in PATTERN_KEYS if k in data})
        except PatternError as e:
            raise SpecError(f"{self.source}: {e}") from None
        if "hash" in data and data["hash"] != pattern.hash:
            raise self.fail("hash", f"{data['hash']!r} does not match the blocks "
                                    f"({pattern.hash}): the pattern was edited")
        return pattern

    def arch(self, raw: Any) -> ArchConfig:
        try:
            return from_dict(ArchConfig, raw, "architecture")
        except UserError as e:
            raise SpecError(f"{self.source}: {e}") from None

    def metrics(self, metrics: Any, pattern: Pattern) -> dict[str, float]:
        if not isinstance(metrics, dict):
            raise self.fail("metrics", "expected an object")
        for key in METRIC_KEYS:
            value = metrics.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                    not math.isfinite(value):
                raise self.fail(f"metrics.{key}", f"expected a finite number, got {value!r}")
        for key, value in pattern_metrics(pattern).items():
            if not math.isclose(metrics[key], value, rel_tol=1e-6):
                raise self.fail(f"metrics.{key}", f"{metrics[key]!r} does not match the "
                                                  f"pattern ({value!r})")
        return dict(metrics)

    def origin(self, origin: Any, digest: Any) -> dict[str, Any]:
        if not isinstance(origin, dict):
            raise self.fail("origin", "expected an object")
        for key, value in origin.items():
            want = ORIGIN_TYPES.get(key)
            if want is not None and value is not None and not (
                    isinstance(value, want) or (want is float and isinstance(value, int))):
                raise self.fail(f"origin.{key}", f"expected {want.__name__}, got {value!r}")
        if digest is not None and digest != origin_digest(origin):
            raise self.fail("origin", "edited by hand: it no longer matches origin_digest, so it "
                                      "cannot say where the pattern came from; export the spec "
                                      "again, or delete origin_digest to train it as your own")
        return dict(origin)


def origin_digest(origin: dict[str, Any]) -> str:
    """sha256 of an origin's canonical JSON, 16 hex digits: a spec carries it, so a hand edit
    of where the pattern came from (its study, accuracy, confirmed evidence) is seen."""
    canonical = json.dumps(origin, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def check_measured(spec: PatternSpec, source: str = "spec") -> None:
    """Refuse a spec whose params or FLOPs differ from those of the network it describes (the
    metrics were edited): builds the network, so it is checked where torch is loaded anyway."""
    measured = make_spec(spec.pattern, spec.arch).metrics
    for key in ("params", "flops"):
        if not math.isclose(spec.metrics[key], measured[key], rel_tol=1e-9):
            raise SpecError(f"{source}: metrics.{key}: {spec.metrics[key]!r} does not match the "
                            f"network ({measured[key]!r})")


def make_spec(pattern: Pattern, arch: ArchConfig,
              origin: dict[str, Any] | None = None) -> PatternSpec:
    """A spec with all metrics measured (params and FLOPs of the built network)."""
    from .model import PatternNet, count_flops, count_params

    model = PatternNet(pattern, arch)
    metrics = {**pattern_metrics(pattern), "params": count_params(model),
               "flops": count_flops(model, arch.input_shape)}
    return PatternSpec(pattern, arch, metrics, dict(origin or {}))
