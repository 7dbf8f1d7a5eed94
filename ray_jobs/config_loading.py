"""Build frozen config dataclasses from YAML mappings, with errors that name the key and file.

YAML is read with `yaml.safe_load` only. Every mapping must match a dataclass: an unknown key
or a value of the wrong type is a `ConfigError` saying where (`recipe.yaml: score.batch_size`)
and what was expected. Help text lives in each field's `metadata["help"]`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml

__all__ = ["ConfigError", "build_config", "describe", "load_yaml", "to_plain"]


class ConfigError(ValueError):
    """A config that does not match its dataclass: names the file, the key and the problem."""


def load_yaml(path: str) -> dict:
    """Read a YAML mapping safely (no Python object tags)."""
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return data


def _at(where: str) -> str:
    return where.rstrip(":")


def _child(where: str, name) -> str:
    return f"{where} {name}" if where.endswith(":") else f"{where}.{name}"


def _type_name(kind) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _coerce(kind, value: Any, where: str):
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{_at(where)}: no type fits {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            allowed = list(typing.get_args(kind))
            raise ConfigError(f"{_at(where)}: {value!r} is not one of {allowed}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_at(where)}: expected a list, got {type(value).__name__}")
        item = typing.get_args(kind)[0] if typing.get_args(kind) else Any
        items = [_coerce(item, v, f"{_at(where)}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_at(where)}: expected a mapping, got {type(value).__name__}")
        value_kind = typing.get_args(kind)[1] if typing.get_args(kind) else Any
        return {str(k): _coerce(value_kind, v, _child(where, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        return build_config(kind, value, where)
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(
            f"{_at(where)}: expected {_type_name(kind)}, got {type(value).__name__} {value!r}"
        )
    return value


def build_config(cls, data: Any, where: str):
    """Instantiate dataclass `cls` from a mapping; `where` prefixes every error message."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{_at(where)}: expected a mapping for {cls.__name__}, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(fields)
        raise ConfigError(f"{_at(where)}: unknown key {unknown[0]!r} (known keys: {known})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, _child(where, name))
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{_at(where)}: missing required key {missing[0]!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{_at(where)}: {error}") from None


def to_plain(config) -> Any:
    """A dataclass (nested) as plain dicts / lists, for printing and YAML dumps."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_plain(v) for v in config]
    if isinstance(config, dict):
        return {k: to_plain(v) for k, v in config.items()}
    return config


def describe(cls, indent: str = "") -> str:
    """Help text of a config dataclass: one line per key with its type, default and help."""
    lines = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        default = "" if field.default is dataclasses.MISSING else f" = {field.default!r}"
        help_text = field.metadata.get("help", "")
        lines.append(f"{indent}{field.name}: {_type_name(hints[field.name])}{default}  {help_text}")
    return "\n".join(lines)
