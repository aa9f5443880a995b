"""``kdtool distill --config``: read a TOML recipe or a run.json into DistillConfig's fields.

A recipe is declarative: TOML is parsed (``tomllib``, or ``tomli`` on Python 3.10), never run.
Its keys are the option names without the dashes (``student-filters`` or ``student_filters``) or
the DistillConfig field names that run.json records (``temperatures`` for ``--sweep-temperatures``);
values have the field's type, lists for the list fields. A ``.json`` file is read as a run.json:
its ``"config"`` object, so ``kdtool distill --config models/run.json --out other`` replays a run.

Example:
    >>> parse_config({"epochs": 3, "student-filters": [8, 16], "sweep_alphas": [0.5]}, "recipe.toml")
    {'epochs': 3, 'student_filters': (8, 16), 'alphas': (0.5,)}
"""

from __future__ import annotations

import difflib
import json
import sys
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from kdtool.distill.config import (
    LIST_FIELDS,
    REMOVED_SETTINGS,
    SETTINGS_BEFORE_THEY_EXISTED,
    DistillConfig,
    normalise_list,
    option_name,
)
from kdtool.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

FIELDS = {f.name for f in fields(DistillConfig)}
_TYPES = typing.get_type_hints(DistillConfig)
# option spellings whose field has another name (sweep_temperatures -> temperatures)
_ALIASES = {
    option_name(name)[2:].replace("-", "_"): name for name in FIELDS if option_name(name)[2:].replace("-", "_") != name
}
_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURALS = {int: "integers", float: "numbers", str: "strings"}


def read_config(path: str | Path) -> dict[str, Any]:
    """Read ``--config``'s file: a ``.toml`` recipe, or a ``.json`` run record (its ``"config"``).

    A run.json written before a setting existed gets that setting's old value
    (``SETTINGS_BEFORE_THEY_EXISTED``), as resuming the run would.

    Args:
        path: the file.

    Returns:
        ``{field: value}`` in DistillConfig's form, for the keys the file sets.

    Raises:
        InputError: one line naming the file (and the key): unreadable, not TOML, not a run.json,
            an unknown key or a value of the wrong type.

    Example:
        >>> import pathlib, tempfile
        >>> recipe = pathlib.Path(tempfile.mkdtemp()) / "recipe.toml"
        >>> _ = recipe.write_text('epochs = 3\\nteachers = ["vgg16"]\\nselect-best = true\\n')
        >>> read_config(recipe)
        {'epochs': 3, 'teachers': ['vgg16'], 'select_best': True}
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
            raise InputError(f'{path}: not a kdtool run.json (no "config" object)')
        values = {**{k: v for k, v in SETTINGS_BEFORE_THEY_EXISTED.items() if k not in doc["config"]}, **doc["config"]}
    elif path.suffix.lower() == ".toml":
        try:
            values = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"{path}: not valid TOML ({exc})") from None
    else:
        raise InputError(f"{path}: --config takes a .toml recipe or a run.json")
    return parse_config(values, str(path))


def parse_config(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Check a recipe's keys and value types, and convert them to DistillConfig's form.

    Args:
        values: the parsed file, ``{key: value}``.
        source: the file's name, for error lines.

    Returns:
        ``{field: value}``: keys as DistillConfig field names, list fields in their dataclass form;
        a removed setting at its "off" value is dropped.

    Raises:
        InputError: one line naming ``source`` and the key.

    Example:
        >>> parse_config({"alpha": 1, "ema": 0.0}, "r.toml")
        {'alpha': 1.0}
        >>> parse_config({"epoch": 3}, "r.toml")
        Traceback (most recent call last):
        ...
        kdtool.errors.InputError: r.toml: unknown key 'epoch' (did you mean 'epochs'?)
        >>> parse_config({"epochs": "3"}, "r.toml")
        Traceback (most recent call last):
        ...
        kdtool.errors.InputError: r.toml: epochs must be an integer, got '3'
    """
    out: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        name = _ALIASES.get(name, name)
        if name in REMOVED_SETTINGS:
            if value != REMOVED_SETTINGS[name]:
                raise InputError(
                    f"{source}: {key} = {value!r} records {option_name(name)}, which kdtool no "
                    "longer has; remove the key to run without it"
                )
            continue
        if name not in FIELDS:
            close = difflib.get_close_matches(name, sorted(FIELDS | set(_ALIASES)), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"{source}: unknown key {key!r}{hint}")
        if name in out:
            raise InputError(f"{source}: {keys[name]} and {key} are the same setting; keep one")
        keys[name] = key
        out[name] = _typed(name, key, value, source)
    return out


def _typed(name: str, key: str, value: Any, source: str) -> Any:
    """``value`` as field ``name``'s type, or one line naming ``source`` and ``key``."""
    if name in LIST_FIELDS:
        kind = LIST_FIELDS[name]
        if not isinstance(value, list) or not all(_is(kind, v) for v in value):
            raise InputError(f"{source}: {key} must be a list of {_PLURALS[kind]}, got {value!r}")
        try:
            return normalise_list(name, value)
        except InputError as exc:
            raise InputError(f"{source}: {key}: {exc.message}") from None
    kind = _TYPES[name]
    optional = type(None) in typing.get_args(kind)  # float | None
    if value is None and optional:
        return None
    base = next(t for t in typing.get_args(kind) if t is not type(None)) if optional else kind
    if not _is(base, value):
        raise InputError(f"{source}: {key} must be {_KINDS[base]}, got {value!r}")
    return float(value) if base is float else value


def _is(kind: type, value: Any) -> bool:
    """Whether ``value`` is of ``kind`` as a recipe writes it (an integer is a number; a bool is neither)."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)
