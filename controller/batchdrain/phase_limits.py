"""What a phase may hold, checked when it enters the backlog (``enqueue`` and ``import``)
rather than when it is launched.

Two kinds of checks, each returning the first problem (the caller adds the row number):

- text: ids, command arguments, env names and values and the other strings of a spec
  must be text that every store and ``exec`` can carry. A NUL byte cannot be passed to
  ``exec`` nor stored by Postgres (``text`` and ``jsonb`` refuse it); a lone surrogate
  (bytes that were not UTF-8 on the command line, or half of an escaped pair in a file)
  cannot be encoded to UTF-8 at all.
- sizes (README "Bad input"): ids at most ``MAX_ID`` characters (the column's width);
  one argument, and one ``NAME=value`` environment entry, at most ``MAX_ARG_STRLEN - 1``
  bytes (Linux refuses a longer single string with E2BIG whatever the total); the
  arguments and environment together within this host's ``ARG_MAX`` less
  ``ENV_HEADROOM`` for what the executor adds; the whole phase at most
  ``MAX_PHASE_BYTES`` (a Job carrying it must stay well under the API server's 1.5 MiB
  request limit).

Byte sizes are counted exactly only when a string's length in characters could exceed
a bound (a character is at most 4 bytes in UTF-8): a million-row import pays for the
scan of each string and nothing more.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from itertools import chain

from batchdrain.domain import PhaseSpec

MAX_ID = 255
# Linux's MAX_ARG_STRLEN (32 pages of 4 KiB): one argv or envp string, its NUL included.
MAX_ARG_STRLEN = 131072
MAX_PHASE_BYTES = 1 << 20
# Room left in ARG_MAX for the environment the executor adds to the phase's own (the
# local executor passes the controller's environment on; identity variables).
ENV_HEADROOM = 64 << 10
POINTER_BYTES = 8
# Linux's floor for ARG_MAX (glibc's sysconf reports no less).
ARG_MAX_FLOOR = 128 << 10

_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def host_arg_max() -> int:
    """This host's ``ARG_MAX``: a quarter of the stack limit on Linux."""
    try:
        value = os.sysconf("SC_ARG_MAX")
    except (OSError, ValueError):
        return ARG_MAX_FLOOR
    return value if value > 0 else ARG_MAX_FLOOR


def text_problem(label: str, value: str) -> str | None:
    """Why ``value`` cannot be stored or passed to ``exec``, or None."""
    if value.isascii() and "\x00" not in value:
        return None
    found = _UNSAFE.search(value)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return f"{label} contains a NUL byte (at character {found.start() + 1})"
    return (f"{label} is not valid UTF-8 text: lone surrogate \\u{ord(char):04x} at character "
            f"{found.start() + 1}")


def _utf8_size(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def _texts(run_id: str, phase_id: str, spec: PhaseSpec) -> Iterator[tuple[str, object, str]]:
    """(label template, what fills it, text) of each string: the label is only made for
    a string with a problem (``_label``), not for every argument of every row."""
    yield "run id", None, run_id
    yield "phase id", None, phase_id
    for index, arg in enumerate(spec.command, start=1):
        yield "command argument {}", index, arg
    for name, value in spec.env:
        yield "env name", None, name
        yield "env {} value", name, value
    for name, value in spec.node_selector:
        yield "node_selector key", None, name
        yield "node_selector {} value", name, value
    for label, text in (("image", spec.image), ("cpu", spec.cpu), ("memory", spec.memory)):
        if text is not None:
            yield label, None, text


def _label(template: str, key: object) -> str:
    return template.format(str(key)[:64]) if key is not None else template


def _id_problem(label: str, value: str) -> str | None:
    if not value or not value.strip():
        return f"{label} is empty"
    if len(value) > MAX_ID:
        return f"{label} is {len(value)} chars, at most {MAX_ID}"
    return None


def _size_problem(spec: PhaseSpec, chars: int, *, arg_max: int) -> str | None:
    limit = MAX_ARG_STRLEN - 1
    for index, arg in enumerate(spec.command, start=1):
        if len(arg) * 4 > limit and (size := _utf8_size(arg)) > limit:
            return f"command argument {index} is {size} bytes, at most {limit} (Linux MAX_ARG_STRLEN)"
    for name, value in spec.env:
        entry = len(name) + 1 + len(value)
        if entry * 4 > limit and (size := _utf8_size(name) + 1 + _utf8_size(value)) > limit:
            return f"env {name[:64]} is {size} bytes as NAME=value, at most {limit} (Linux MAX_ARG_STRLEN)"
    exec_budget = max(arg_max - ENV_HEADROOM, 0)
    exec_chars = sum(len(a) + 1 for a in spec.command) + sum(len(k) + len(v) + 2 for k, v in spec.env)
    pointers = (len(spec.command) + len(spec.env) + 2) * POINTER_BYTES
    if exec_chars * 4 + pointers > exec_budget:
        exec_bytes = sum(_utf8_size(a) + 1 for a in spec.command) + sum(
            _utf8_size(k) + _utf8_size(v) + 2 for k, v in spec.env) + pointers
        if exec_bytes > exec_budget:
            return (f"command and env are {exec_bytes} bytes for exec, at most {exec_budget} "
                    f"(this host's ARG_MAX {arg_max} less {ENV_HEADROOM} for the executor's environment)")
    if chars * 4 > MAX_PHASE_BYTES:
        size = sum(_utf8_size(t) for t in _all_strings(spec))
        if size > MAX_PHASE_BYTES:
            return f"phase is {size} bytes of text, at most {MAX_PHASE_BYTES} (1 MiB)"
    return None


def _all_strings(spec: PhaseSpec) -> Iterator[str]:
    yield from spec.command
    for name, value in (*spec.env, *spec.node_selector):
        yield name
        yield value
    for text in (spec.image, spec.cpu, spec.memory, spec.image_pull_policy, spec.queue, spec.priority_class,
                 spec.workload_priority_class):
        if text is not None:
            yield text


def _plainly_fits(run_id: str, phase_id: str, spec: PhaseSpec, *, arg_max: int) -> bool:
    """True when every text is ASCII without NUL and the phase fits every size bound by
    a sum over all of it: the common row, settled by one join instead of a check per
    string (False says nothing; the checks below decide)."""
    texts = "".join((run_id, phase_id, *spec.command, *chain.from_iterable(spec.env),
                     *chain.from_iterable(spec.node_selector), spec.image or "", spec.cpu or "", spec.memory or ""))
    if not texts.isascii() or "\x00" in texts:
        return False
    # ASCII: a character is a byte. This is at least each sum _size_problem makes (an
    # argv or envp string's NUL, an entry's '=', the pointers), with the ids and the
    # texts only the Job carries added in; under ARG_MAX it is also far under
    # MAX_PHASE_BYTES (the few texts left out are names of at most 253 characters).
    exec_bytes = len(texts) + len(spec.command) + 2 * len(spec.env) \
        + (len(spec.command) + len(spec.env) + 2) * POINTER_BYTES
    return exec_bytes <= min(MAX_ARG_STRLEN - 1, arg_max - ENV_HEADROOM)


def phase_problem(run_id: str, phase_id: str, *, spec: PhaseSpec, arg_max: int) -> str | None:
    """The first reason this phase cannot enter the backlog, or None."""
    for label, value in (("run id", run_id), ("phase id", phase_id)):
        problem = _id_problem(label, value)
        if problem:
            return problem
    if _plainly_fits(run_id, phase_id, spec, arg_max=arg_max):
        return None
    chars = 0
    for template, key, text in _texts(run_id, phase_id, spec):
        if not text.isascii() or "\x00" in text:
            problem = text_problem(_label(template, key), text)
            if problem:
                return problem
        chars += len(text)
    return _size_problem(spec, chars, arg_max=arg_max)
