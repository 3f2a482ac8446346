"""The configuration of a run as data: defaults < a TOML config file < command-line flags and ``--set``.

A run has *run settings* (dataset, scenario, methods, seeds, training recipe,
output and cache folders: :data:`RUN_DEFAULTS`) and, per method, the
*method settings* of :data:`jaxunlearn.experiments.registry.SETTINGS` (the
profile of the dataset). A config file holds both::

    dataset = "digits"
    scenario = "class:3"
    methods = ["ssd", "lfssd", "jit"]     # or "ssd,lfssd,jit", or "all"
    seeds = [0]
    epochs = 30

    [ssd]
    alpha = 5

    [finetune]
    optimizer = { name = "sgd", lr = 0.01 }   # the other optimizer keys keep their defaults

and ``--set ssd.alpha=5 --set finetune.optimizer.lr=0.01`` sets one key from
the command line, its value read as a TOML scalar (``5``, ``0.3``, ``true``,
``"cg"``; a bare word such as ``lissa`` is taken as a string, ``none`` clears
a key whose default is none, such as ``clip_norm``). Every key is checked
against the defaults (name and type) before anything is loaded or trained:
an unknown method or key is an error that lists the valid ones.
:func:`to_toml` prints a resolved configuration in the same format, so the
output of ``jaxunlearn forget --print-config`` (and the ``config.toml`` a run
writes beside its results) is a config file that reproduces the run.

Why TOML and not ``ml_collections`` (the big_vision/scenic configs): TOML is
read by the standard library (``tomllib``, Python 3.11; ``tomli`` backports it
to 3.10), so the format adds no dependency; it is the format users already
write for ``pyproject.toml``; and a config file is data, not Python code that
runs on import. Our settings are flat tables of numbers and strings, which is
what TOML holds best; ``ml_collections``' strengths (lazy references between
fields, configs computed in Python, absl flag overrides) would serve larger
model zoos more than a comparison of ten methods.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from jaxunlearn.experiments.registry import COMPARED, OPTIMIZERS, default_settings, merge_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The run settings and their defaults (``None``: not set); each one's flag is ``--<key>`` with dashes for
#: underscores (``batch_size``: ``--batch-size``), except ``cache = false``: ``--no-cache``.
RUN_DEFAULTS: dict[str, Any] = {
    "dataset": "digits", "scenario": "class:3", "methods": "all", "seeds": "0,1,2", "model": None, "epochs": 30,
    "batch_size": 64, "lr": 1e-3, "data_dir": None, "download": False, "out": "results", "cold_timing": False,
    "models": None, "cache": True, "cache_dir": None,
}

#: The type each run setting takes in a config file (``None``-able where the default is ``None``).
_RUN_TYPES: dict[str, tuple[type, ...]] = {
    "dataset": (str,), "scenario": (str,), "methods": (str, list), "seeds": (str, list), "model": (str,),
    "epochs": (int,), "batch_size": (int,), "lr": (float, int), "data_dir": (str,), "download": (bool,),
    "out": (str,), "cold_timing": (bool,), "models": (int,), "cache": (bool,), "cache_dir": (str,),
}


class ConfigError(ValueError):
    """A configuration that cannot run: an unknown method or key, a value of the wrong type, an unreadable file."""


def read_toml(path: str) -> dict:
    """The TOML file ``path`` as a dict; :class:`ConfigError` (naming the file) when it is missing or malformed."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"--config {path}: cannot read it ({err.strerror or err}).") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--config {path}: not valid TOML ({err}).") from None


def split_file(document: Mapping[str, Any], where: str) -> tuple[dict, dict]:
    """``(run settings, method tables)`` of a parsed config file; an unknown top-level key is a
    :class:`ConfigError` naming ``where`` and the valid keys."""
    run, methods = {}, {}
    for key, value in document.items():
        if key in COMPARED:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: [{_key(key)}] must be a table of settings, got {value!r}.")
            methods[key] = dict(value)
        elif key in RUN_DEFAULTS:
            run[key] = _check_run_value(key, value, where)
        else:
            raise ConfigError(f"{where}: unknown key {key!r}; run settings are {', '.join(RUN_DEFAULTS)}, "
                              f"method tables are {', '.join(COMPARED)}.")
    return run, methods


def _check_run_value(key: str, value: Any, where: str) -> Any:
    types = _RUN_TYPES[key]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if isinstance(value, list):
        ok = all(isinstance(v, str if key == "methods" else int) and not isinstance(v, bool) for v in value)
    if not ok:
        kinds = " or ".join("a list" if t is list else {"int": "an integer", "float": "a number", "str": "a string",
                                                         "bool": "true/false"}[t.__name__] for t in types)
        raise ConfigError(f"{where}: {key} must be {kinds}; got {value!r}.")
    if key == "methods" and isinstance(value, list):
        return ",".join(value)
    if key == "seeds" and isinstance(value, list):
        return ",".join(str(v) for v in value)
    return float(value) if key == "lr" else value


def parse_value(text: str) -> Any:
    """A command-line value read as a TOML scalar (``5`` -> 5, ``0.3``, ``true``, ``"cg"``); text TOML cannot
    read is taken as a string (so ``lissa`` needs no quotes)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def parse_assignment(text: str, flag: str = "--set") -> tuple[str, list[str], str]:
    """``"ssd.alpha=5"`` -> ``("ssd", ["alpha"], "5")``: the method, the key path and the value text."""
    name, eq, value = text.partition("=")
    path = [p.strip() for p in name.strip().split(".")]
    if not eq or len(path) < 2 or not all(path):
        raise ConfigError(f"{flag} takes METHOD.KEY=VALUE (e.g. ssd.alpha=5, finetune.optimizer.lr=0.01); got "
                          f"{text!r}. Run settings have their own flags (--epochs, --seeds, ...).")
    return path[0], path[1:], value


def nested(path: Sequence[str], value: Any) -> dict:
    """``(["optimizer", "lr"], 0.01)`` -> ``{"optimizer": {"lr": 0.01}}``."""
    for key in reversed(path):
        value = {key: value}
    return value


def resolve_settings(overrides: Mapping[str, Mapping[str, Any]], profile: str, where: str = "--set") -> dict:
    """Every compared method's settings under ``profile`` with ``overrides`` (``{method: {key: value}}``) applied.

    Each override is checked against the default it replaces (:func:`check_override`).

    Args:
      overrides: per method, the keys to change (nested tables for the optimizer).
      profile: ``"digits"`` or ``"cifar"`` (:data:`jaxunlearn.experiments.registry.PROFILES`).
      where: where the overrides come from, for the error messages.

    Returns:
      ``{method: settings}`` for every method of :data:`~jaxunlearn.experiments.registry.COMPARED`.

    Raises:
      ConfigError: an unknown method or key, or a value of the wrong type.
    """
    unknown = sorted(set(overrides) - set(COMPARED))
    if unknown:
        raise ConfigError(f"{where}: unknown method {unknown[0]!r}; methods with settings: {', '.join(COMPARED)}.")
    resolved = {}
    for name in COMPARED:
        base = default_settings(name, profile)
        if name in overrides:
            base = merge_settings(base, check_override(name, overrides[name], base, where))
        resolved[name] = base
    return resolved


def check_override(method: str, override: Mapping[str, Any], base: Mapping[str, Any], where: str,
                   prefix: str = "") -> dict:
    """``override`` with each value checked against (and converted to the type of) the default it replaces.

    An int stands for a float; a whole float for an int; ``"none"`` (or ``None``) for a key whose default
    is none (an optimizer's ``clip_norm``); an optimizer's keys are those of its ``name``
    (:data:`~jaxunlearn.experiments.registry.OPTIMIZERS`).

    Raises:
      ConfigError: naming ``where``, the method, the key, and the valid keys or the expected type.
    """
    out, nullable = {}, set()
    if base.get("name") in OPTIMIZERS:  # an optimizer: its keys are those of the (new) name
        name = override.get("name", base.get("name"))
        if name not in OPTIMIZERS:
            raise ConfigError(f"{where}: {method}.{prefix}name must be one of {', '.join(OPTIMIZERS)}; got {name!r}.")
        kept = base if name == base.get("name") else OPTIMIZERS[name]  # a new name starts from its defaults
        base = {"name": name, "lr": base.get("lr"), **OPTIMIZERS[name], **{k: v for k, v in kept.items()
                                                                          if k in OPTIMIZERS[name]}}
        nullable = {k for k, v in OPTIMIZERS[name].items() if v is None}
    for key, value in override.items():
        full = f"{method}.{prefix}{key}"
        if key not in base:
            valid = ", ".join(f"{prefix}{k}" for k in base)
            raise ConfigError(f"{where}: unknown setting {full!r}; {method}'s {'optimizer ' if prefix else ''}"
                              f"settings are {valid}.")
        default = base[key]
        if isinstance(default, Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {full} is a table ({', '.join(default)}); set one of its keys, e.g. "
                                  f"{full}.{next(iter(default))}=..., or give a TOML table.")
            out[key] = check_override(method, value, default, where, prefix=f"{prefix}{key}.")
        else:
            out[key] = coerce(value, default, full, where, key in nullable)
    return out


def coerce(value: Any, default: Any, full: str, where: str, nullable: bool = False) -> Any:
    def wrong(kind: str) -> ConfigError:
        return ConfigError(f"{where}: {full} takes {kind}; got {value!r}.")

    nullable = nullable or default is None
    if value is None or isinstance(value, str) and value.lower() in ("none", "null"):
        if nullable:
            return None
        raise wrong("a value (it cannot be none)")
    if nullable and isinstance(default, (type(None), float)):  # an optional number (clip_norm)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise wrong("a number or none")
        return float(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise wrong("a finite number")
        return float(value)
    if not isinstance(value, str):
        raise wrong(f"a string (such as {default!r})")
    return value


def overrides_from_sets(assignments: Sequence[str]) -> dict:
    """``["ssd.alpha=5", "finetune.optimizer.lr=0.01"]`` -> ``{"ssd": {"alpha": 5}, "finetune": {...}}``."""
    out: dict = {}
    for text in assignments:
        method, path, value = parse_assignment(text)
        out[method] = merge_settings(out.get(method, {}), nested(path, parse_value(value)))
    return out


def combine(*layers: Mapping[str, Mapping[str, Any]]) -> dict:
    """Method overrides of several layers, later layers winning key by key."""
    out: dict = {}
    for layer in layers:
        for method, values in layer.items():
            out[method] = merge_settings(out.get(method, {}), values)
    return out


# ---- printing -----------------------------------------------------------------------------------------------

def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(run: Mapping[str, Any], settings: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """A resolved configuration as TOML: the run settings, then one table per method (nested tables inline).

    Keys whose value is ``None`` (not set) are written as comments, so reading the text back
    (:func:`read_toml`) gives the same configuration.
    """
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in run.items():
        lines.append(f"# {key}: not set" if value is None else f"{_key(key)} = {_value(value)}")
    for method, values in settings.items():
        lines += ["", f"[{_key(method)}]"] + [f"{_key(k)} = {_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
