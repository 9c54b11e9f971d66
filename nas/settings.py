"""Frozen-dataclass settings loaded from dicts (TOML tables, spec JSON): the one place where
keys and value types are checked, so every error names its field."""
from __future__ import annotations

import dataclasses
import types
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import UserError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def require(ok: bool, field: str, message: str) -> None:
    """Raise ``UserError("field: message")`` unless ``ok``; for ``__post_init__`` checks."""
    if not ok:
        raise UserError(f"{field}: {message}")


def _convert(value: Any, hint: Any) -> tuple[bool, Any]:
    """(matches, value converted to the hinted type)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        for arg in get_args(hint):
            ok, v = _convert(value, arg)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    if origin is Literal:
        return value in get_args(hint), value
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False, value
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        if len(args) != len(value):
            return False, value
        converted = [_convert(v, a) for v, a in zip(value, args)]
        return all(ok for ok, _ in converted), tuple(v for _, v in converted)
    if origin is dict or hint is dict:
        return isinstance(value, dict), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if hint is Any:
        return True, value
    raise TypeError(f"unsupported settings type {hint!r}")


def _describe(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def _dataclass_items(hint: Any) -> Any:
    """The item type of ``tuple[SomeDataclass, ...]`` (None for any other hint)."""
    args = get_args(hint)
    if get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis and \
            isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build settings dataclass ``cls`` from ``data`` (nested dataclass fields from nested
    tables); unknown keys, missing keys, wrong types and failed checks raise
    :class:`UserError` as ``"<where>.<key>: <problem>"``."""
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        raise UserError(f"{where or 'settings'}: expected a table, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(f"{prefix}{unknown[0]}: unknown key (known keys: {', '.join(names)})")
    for f in fields:
        if f.name not in data and f.default is dataclasses.MISSING and \
                f.default_factory is dataclasses.MISSING:
            raise UserError(f"{prefix}{f.name}: missing")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, prefix + key)
            continue
        item = _dataclass_items(hint)
        if item is not None:  # a list of tables ([[section.key]] in TOML)
            if not isinstance(value, (list, tuple)):
                raise UserError(f"{prefix}{key}: expected a list of tables, got {value!r}")
            kwargs[key] = tuple(from_dict(item, v, f"{prefix}{key}[{i}]")
                                for i, v in enumerate(value))
            continue
        ok, converted = _convert(value, hint)
        if not ok:
            raise UserError(f"{prefix}{key}: expected {_describe(hint)}, got {value!r}")
        kwargs[key] = converted
    try:
        return cls(**kwargs)
    except UserError as e:
        raise UserError(f"{prefix}{e}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain JSON/TOML-friendly dict of a settings dataclass (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return to_dict(v)
        return v
    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}

