"""What the spec fields of a backlog row must hold, checked when it enters the backlog.

``spec_problem`` returns the first problem of a row's fields, or None; ``PhaseSpec.
from_json`` raises it as ``BadInput``. Each check returns the problem, or None; the
checks a row needs are picked once per key set (rows of one file share a few), so a
million-row import pays only for the fields its rows hold.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from batchdrain.bounds import seconds_problem

# What Kubernetes accepts, checked at enqueue time so a bad spec is refused at the door
# instead of failing every attempt later.
_IMAGE_REF = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_QUANTITY = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")

# A table rather than one long function: ``spec_problem`` reports the first problem in
# this order, and the CLI's bad-input table (tests/integration/test_bad_input.py)
# holds the exact wording.
_SpecCheck = Callable[[dict[str, Any]], str | None]

_SPEC_FIELDS = frozenset(
    {"command", "image", "env", "timeout_seconds", "timeout", "cpu", "memory", "image_pull_policy",
     "node_selector", "run_id", "phase_id", "queue", "priority_class", "workload_priority_class"}
    # Scheduling fields of a row: columns of their own (``importing.schedule``), not the spec.
    | {"priority", "run_weight", "needs"}
)


def timeout_of(data: dict[str, Any]) -> Any:
    return data.get("timeout_seconds", data.get("timeout"))


def _check_command(data: dict[str, Any]) -> str | None:
    command = data.get("command")
    if isinstance(command, str):
        return "command must be a list of strings, not one string"
    if not command or not all(isinstance(c, str) for c in command):
        return "command must be a non-empty list of strings"
    return None


def _mapping_check(key: str, problem: str) -> _SpecCheck:
    def check(data: dict[str, Any]) -> str | None:
        return None if isinstance(data.get(key) or {}, dict) else problem

    return check


def _check_timeout(data: dict[str, Any]) -> str | None:
    timeout = timeout_of(data)
    if timeout is None:
        return None
    # bool is an int to Python, never a number of seconds to a person (seconds_problem says so).
    problem = seconds_problem(timeout)
    return f"timeout {problem}" if problem else None


def _check_image(data: dict[str, Any]) -> str | None:
    image = data.get("image")
    if image is not None and (not isinstance(image, str) or not _IMAGE_REF.match(image)):
        return f"invalid image reference {image!r}"
    return None


def _quantity_check(key: str) -> _SpecCheck:
    def check(data: dict[str, Any]) -> str | None:
        value = data.get(key)
        if value is not None and (not isinstance(value, str | int) or not _QUANTITY.match(str(value))):
            return f"{key} {value!r} is not a Kubernetes quantity (e.g. 500m, 256Mi)"
        return None

    return check


def _check_env_names(data: dict[str, Any]) -> str | None:
    for name in data.get("env") or {}:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            return f"invalid environment variable name {name!r}"
    return None


def _check_pull_policy(data: dict[str, Any]) -> str | None:
    policy = data.get("image_pull_policy")
    if policy is not None and policy not in _PULL_POLICIES:
        return f"image_pull_policy must be one of {', '.join(_PULL_POLICIES)}, got {policy!r}"
    return None


def _name_check(key: str, *, subdomain: bool) -> _SpecCheck:
    """A Kubernetes object name: a DNS-1123 label (used as a label value), or subdomain."""
    pattern, most = (_DNS_SUBDOMAIN, 253) if subdomain else (_DNS_LABEL, 63)

    def check(data: dict[str, Any]) -> str | None:
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > most or not pattern.match(value)):
            kind = "DNS-1123 subdomain" if subdomain else "DNS-1123 label"
            return f"{key} {value!r} is not a Kubernetes object name (a {kind}: lower case, digits, '-', " \
                   f"at most {most} characters)"
        return None

    return check


def _check_known_fields(data: dict[str, Any]) -> str | None:
    unknown = set(data) - _SPEC_FIELDS
    return f"unknown field(s) {', '.join(sorted(unknown))}" if unknown else None


# Each check with the fields it reads (None: every row): a check of an absent field
# finds nothing, so it is not run (a million-row import pays only for what rows hold).
_SPEC_CHECKS: tuple[tuple[frozenset[str] | None, _SpecCheck], ...] = tuple(
    (frozenset(fields) if fields is not None else None, check) for fields, check in (
        (None, _check_command),
        (("env",), _mapping_check("env", "env must be a mapping of NAME: value")),
        (("timeout_seconds", "timeout"), _check_timeout),
        (("node_selector",), _mapping_check("node_selector", "node_selector must be a mapping of label: value")),
        (("image",), _check_image),
        (("cpu",), _quantity_check("cpu")),
        (("memory",), _quantity_check("memory")),
        (("env",), _check_env_names),
        (("image_pull_policy",), _check_pull_policy),
        (("queue",), _name_check("queue", subdomain=False)),
        (("priority_class",), _name_check("priority_class", subdomain=True)),
        (("workload_priority_class",), _name_check("workload_priority_class", subdomain=False)),
    ))


@functools.lru_cache(maxsize=256)
def _checks_for(present: frozenset[str]) -> tuple[_SpecCheck, ...]:
    """The checks a row with these fields needs, in ``_SPEC_CHECKS`` order. Rows of one
    file share a few key sets, so this is worked out once per set, not per row (bounded:
    a file of ever-new unknown fields is refused at its first row anyway)."""
    checks = tuple(check for fields, check in _SPEC_CHECKS if fields is None or not present.isdisjoint(fields))
    # Whether a field is unknown is a matter of the key set alone: that check comes last
    # (a row's first problem is a known field's), and only for a row with such a field.
    return checks if present <= _SPEC_FIELDS else (*checks, _check_known_fields)


def spec_problem(data: dict[str, Any]) -> str | None:
    """The first problem of a row's spec fields, in ``_SPEC_CHECKS`` order, or None."""
    for check in _checks_for(frozenset(data)):
        problem = check(data)
        if problem is not None:
            return problem
    return None
