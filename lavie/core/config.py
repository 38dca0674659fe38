"""Configs as plain data, validated on load: one loader for every config of the platform.

A config is a pydantic model built on :class:`StrictModel` (unknown keys are errors). It is read
from a YAML or JSON file (or given as a mapping), dotted-key overrides are applied, and it is
validated; every problem is one :class:`~lavie.core.errors.UserError` line naming the file and the
key (``train.yaml: run.max_stepz: unknown key``).

Overrides come from the command line in two shapes, both handled here:

* ``--set a.b.0.c=VALUE`` (any config key; VALUE parsed as YAML): :func:`parse_override`;
* typed flags (``--min-height 480``) that the command maps onto dotted keys.

``KEY=VALUE`` arguments of any other option (``--storage-option``, ``--env``) are split by
:func:`parse_key_value`, which names the item at fault.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from lavie.core.errors import UserError, config_error, message_line

Model = TypeVar("Model", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config section: an unknown key is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def read_mapping(path: str | Path, where: str | None = None) -> dict[str, Any]:
    """The mapping in a YAML or JSON file (JSON by the ``.json`` suffix, YAML otherwise); errors
    name ``where`` (default: the path)."""
    path = Path(path)
    where = where or str(path)
    if not path.is_file():
        raise UserError(f"{where}: config file not found")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: cannot read ({message_line(exc)})") from None
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise UserError(f"{where}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({message_line(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{where}: a config must be a mapping of keys to values")
    return data


def one_of(value: str, choices: Iterable[str], what: str) -> str:
    """``value`` if it is among ``choices``; the error (for a pydantic validator) lists them."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"'{value}' is not {what} (one of: {', '.join(choices)})")
    return value


def parse_key_value(item: str, option: str) -> tuple[str, str]:
    """``KEY=VALUE`` → ``(KEY, VALUE)``; the error names the option and the item at fault."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"{option} '{item}': expected KEY=VALUE")
    return key.strip(), value


def parse_override(item: str) -> tuple[str, Any]:
    """``--set a.b=VALUE`` → ``("a.b", value)``, VALUE parsed as YAML (``10``, ``true``, ``[1, 2]``)."""
    key, text = parse_key_value(item, "--set")
    try:
        return key, (yaml.safe_load(text) if text.strip() else None)
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: value is not valid YAML ({message_line(exc)})") from None


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested dicts and lists; missing dict levels are created."""
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[:depth]) or "config"
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {key}: {where} has no item {part}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UserError(f"--set {key}: {where} is not a section")


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``--set KEY=VALUE`` item to a raw config mapping."""
    set_dotted(data, *parse_override(item))


def validate(model: type[Model], data: Mapping[str, Any], where: str = "config", root: str = "config") -> Model:
    """``model`` validated from ``data``, or a one-line :class:`UserError` naming ``where`` and the
    key (``root`` for a problem of the whole mapping)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{where}: {config_error(exc, root)}") from None


def load_config(
    model: type[Model],
    source: str | Path | Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    *,
    where: str | None = None,
) -> Model:
    """Read ``source`` (a YAML/JSON path, a mapping, or None for the defaults), apply the dotted
    ``overrides`` in order and validate into ``model``."""
    label = where or (str(source) if isinstance(source, (str, Path)) else "config")
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        data = read_mapping(source, label)
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for key, value in items:
        set_dotted(data, key, value)
    return validate(model, data, label)
