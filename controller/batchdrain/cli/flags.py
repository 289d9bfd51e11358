"""Every ``Settings`` field as a ``--flag`` of the commands that need it.

Generated from the model, so an option can never exist as a ``BATCHDRAIN_*``
variable and be missing on the command line; a flag left out means "not given",
and ``Settings`` then falls back to the environment and its defaults.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import types
from collections.abc import Callable, Sequence
from typing import Any, Literal, Union, get_args, get_origin

import typer
from pydantic import ValidationError

from batchdrain.domain import BadInput
from batchdrain.settings import Settings, env_name, unknown_env

# The settings a command needs to open the database, and also the log store.
DB_FIELDS = ("database_url", "retry_attempts", "retry_max_seconds")
STORE_FIELDS = (*DB_FIELDS, "log_store", "log_store_options")
# Fields whose flag is repeatable KEY=VALUE, one pair each (values may hold commas).
_REPEATED_PAIRS = {"log_store_options": "--log-store-option"}


def _cli_type(annotation: Any) -> Any:
    """The type typer should parse for a settings field (always optional: None = not given)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType) and len(args) == 1:
        return _cli_type(args[0])
    if origin is Literal:
        return str | None
    if origin is list and get_args(annotation) == (str,):
        return list[str] | None
    if origin in (list, dict):
        return str | None  # JSON or K=V list, parsed below
    return annotation | None


def _settings_parameters(fields: Sequence[str] | None) -> list[inspect.Parameter]:
    params = []
    for name, info in Settings.model_fields.items():
        if fields is not None and name not in fields:
            continue
        flag = _REPEATED_PAIRS.get(name) or "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{name.replace('_', '-')}"] if info.annotation is bool else [flag]
        env = env_name(name)
        option = typer.Option(None, *decls, help=f"{info.description} [env: {env}]", show_default=False,
                              rich_help_panel="Settings")
        if name in _REPEATED_PAIRS:
            annotation: Any = list[str] | None
        else:
            annotation = bool | None if info.annotation is bool else _cli_type(info.annotation)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=annotation))
    return params


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` from the command line."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise BadInput(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _parse_override(name: str, value: Any) -> Any:
    annotation = Settings.model_fields[name].annotation
    if name in _REPEATED_PAIRS:
        return dict(key_value(p) for p in value)
    if get_origin(annotation) is dict or annotation == dict[str, str]:
        pairs = [p for p in str(value).split(",") if p]
        return dict(key_value(p) for p in pairs)
    if get_origin(annotation) is list and get_args(annotation) != (str,):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadInput(f"--{name.replace('_', '-')} must be JSON: {exc}") from exc
    return value


def load_settings(overrides: dict[str, Any]) -> Settings:
    for warning in unknown_env(os.environ):
        typer.echo(f"batchdrain: warning: {warning}", err=True)
    try:
        return Settings(**{k: _parse_override(k, v) for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        field = str(first["loc"][0]) if first["loc"] else ""
        named = f" (--{field.replace('_', '-')} or {env_name(field)})" if field in Settings.model_fields else ""
        given = first.get("input")
        got = f", got {given!r}" if isinstance(given, str | int | float) and not isinstance(given, bool) else ""
        raise BadInput(f"invalid setting {where}{named}: {first['msg']}{got}") from exc


def with_settings(fields: Sequence[str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one flag per settings field; it receives a built ``Settings`` first."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]
        extra = _settings_parameters(fields)
        names = {p.name for p in extra}

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return fn(load_settings(overrides), **kwargs)

        wrapper.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        return wrapper

    return decorate
