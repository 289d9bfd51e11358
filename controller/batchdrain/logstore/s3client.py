"""The S3 seam of the log store: options, one client, one retry policy, our own errors.

s3fs (the optional extra ``batchdrain[s3]``) builds the client: an aiobotocore session
with the standard AWS credential chain (environment, shared files, web identity,
instance metadata), the endpoint and the client options. The sink then calls that
client's operations directly, so every call goes through exactly one retry policy,
this module's (tenacity; botocore's own retries are off and s3fs's loop is not used),
and every failure leaves as ``LogStoreError`` (or ``FileNotFoundError`` for a key that
is not there), never as a botocore exception.

Retried: connection errors, timeouts, 5xx, 429 and S3's throttling codes, with jittered
exponential backoff bounded by ``Settings.retry_attempts`` / ``retry_max_seconds``. A
4xx (no such bucket, access denied, a bad request) is not retried.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_random_exponential

from batchdrain.domain import BadInput
from batchdrain.logstore.base import LogStoreError

T = TypeVar("T")
MIN_PART = 5 * 1024 * 1024  # S3's smallest part but the last
DEFAULT_PART = 8 * 1024 * 1024
READ_CHUNK = 1024 * 1024
_THROTTLED = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                        "InternalError", "ServiceUnavailable", "TooManyRequests"})
_MISSING = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
EXTRA_HINT = "pip install 'batchdrain[s3]'"


@dataclass(frozen=True)
class S3Options:
    """What ``--log-store-option KEY=VALUE`` may set for an ``s3://`` store."""

    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str | None = None  # auto | path | virtual
    verify: str | None = None  # "false", or a CA bundle path
    anon: bool = False
    part_size: int = DEFAULT_PART
    flush_seconds: float = 5.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry_attempts: int = 6
    retry_max_seconds: float = 30.0

    @classmethod
    def parse(cls, raw: Mapping[str, str], *, retry_attempts: int, retry_max_seconds: float) -> S3Options:
        """From ``KEY=VALUE`` strings; ``BadInput`` (one line) for an unknown key or a bad value."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {"retry_attempts": retry_attempts, "retry_max_seconds": retry_max_seconds}
        for key, text in raw.items():
            name = key.strip().lower().replace("-", "_")
            if name not in known or name in ("retry_attempts", "retry_max_seconds"):
                public = sorted(set(known) - {"retry_attempts", "retry_max_seconds"})
                raise BadInput(f"unknown --log-store-option {key!r} for s3://; known: {', '.join(public)}")
            values[name] = _convert(name, text)
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        if self.addressing_style not in (None, "auto", "path", "virtual"):
            raise BadInput(f"--log-store-option addressing_style must be auto, path or virtual, "
                           f"not {self.addressing_style!r}")
        if self.part_size < MIN_PART:
            raise BadInput(f"--log-store-option part_size must be at least {MIN_PART} (5 MiB), "
                           f"not {self.part_size}")
        if self.flush_seconds < 0 or self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise BadInput("--log-store-option flush_seconds must be >= 0, the timeouts > 0")


def _convert(name: str, text: str) -> Any:
    try:
        if name == "anon":
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if name == "part_size":
            return int(text)
        if name in ("flush_seconds", "connect_timeout", "read_timeout"):
            return float(text)
    except ValueError as err:
        raise BadInput(f"--log-store-option {name}: not a valid value: {text!r}") from err
    return text


def import_s3fs() -> Any:
    """The s3fs module, or ``BadInput`` naming the extra that brings it (one line, exit 2)."""
    try:
        import s3fs
    except ImportError as err:
        raise BadInput(f"an s3:// log store needs the s3fs package, which is not installed: "
                       f"{EXTRA_HINT}") from err
    return s3fs


def _status(err: BaseException) -> tuple[int | None, str | None]:
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return None, None
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return (int(status) if status is not None else None), (response.get("Error") or {}).get("Code")


def retriable(err: BaseException) -> bool:
    """A failure worth another try: the network, a timeout, the server busy or broken."""
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError

    if isinstance(err, ClientError):
        status, code = _status(err)
        return (status is not None and (status >= 500 or status == 429)) or code in _THROTTLED
    if isinstance(err, HTTPClientError | IncompleteReadError | asyncio.TimeoutError | TimeoutError):
        return True
    # ResponseStreamingError and the aiohttp payload errors botocore wraps.
    return isinstance(err, BotoCoreError) and "connection" in type(err).__name__.lower()


def translate(err: BaseException, what: str) -> OSError:
    """Our error for a failed call: ``FileNotFoundError`` for a missing key, else ``LogStoreError``."""
    status, code = _status(err)
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    if status == 404 or code in _MISSING:
        return FileNotFoundError(errno.ENOENT, f"{what}: not found")
    number = errno.EACCES if status == 403 else errno.EIO
    return LogStoreError(number, f"{what}: {detail}")


class S3Client:
    """The operations the sink needs, each through the one retry policy."""

    def __init__(self, options: S3Options) -> None:
        s3fs = import_s3fs()
        self.options = options
        client_kwargs: dict[str, Any] = {}
        if options.region:
            client_kwargs["region_name"] = options.region
        if options.verify is not None:
            client_kwargs["verify"] = False if options.verify.lower() in ("false", "0", "no") else options.verify
        config: dict[str, Any] = {
            # One retry policy: ours. botocore's standard mode counts the first try.
            "retries": {"max_attempts": 1, "mode": "standard"},
            "connect_timeout": options.connect_timeout,
            "read_timeout": options.read_timeout,
        }
        if options.addressing_style:
            config["s3"] = {"addressing_style": options.addressing_style}
        self._fs = s3fs.S3FileSystem(anon=options.anon, endpoint_url=options.endpoint_url,
                                     client_kwargs=client_kwargs, config_kwargs=config, skip_instance_cache=True)
        self.retries = 0  # retries so far: read by tests and the benchmark
        self.down = False  # a call outlived the policy; cleared by the next success
        self.on_retry: Callable[[], None] | None = None

    def _sync(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from fsspec.asyn import sync

        return sync(self._fs.loop, fn, **kwargs)

    def _client(self) -> Any:
        return self._fs.s3  # connects (sync) on first use

    def retrying(self, what: str, fn: Callable[[], T]) -> T:
        """``fn`` under the policy; its failure translated. The first try runs outside tenacity.

        Once a call has outlived the policy the store is *down*: later calls get one try
        each until one succeeds, so a session that halts on a dead store does not wait out
        the whole budget again for every log its report reads.
        """
        try:
            result = fn()
            self.down = False
            return result
        except Exception as err:
            if not retriable(err) or self.down:
                raise translate(err, what) from err
            first: Exception | None = err

        def again() -> T:
            nonlocal first
            if first is not None:
                error, first = first, None
                raise error
            return fn()

        def counted(_state: object) -> None:
            self.retries += 1
            if self.on_retry is not None:
                self.on_retry()

        try:
            result = Retrying(
                retry=retry_if_exception(retriable),
                stop=stop_after_attempt(self.options.retry_attempts) | stop_after_delay(self.options.retry_max_seconds),
                wait=wait_random_exponential(multiplier=0.1, max=5.0),
                before_sleep=counted,
                reraise=True,
            )(again)
        except Exception as err:
            self.down = self.down or retriable(err)
            raise translate(err, what) from err
        self.down = False
        return result

    def call(self, op: str, what: str, **kwargs: Any) -> dict[str, Any]:
        def once() -> dict[str, Any]:
            result: dict[str, Any] = self._sync(getattr(self._client(), op), **kwargs)
            return result

        return self.retrying(what, once)

    def stream(self, bucket: str, key: str, what: str, *, start: int = 0) -> Iterator[bytes]:
        """The object's bytes from ``start``, in chunks; a dropped body resumes where it broke."""
        offset = start
        drops = 0
        while True:
            ranged = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                response = self.call("get_object", what, Bucket=bucket, Key=key, **ranged)
            except LogStoreError as err:
                status, _ = _status(err.__cause__) if err.__cause__ else (None, None)
                if status == 416:  # asked from the end of the object: nothing more
                    return
                raise
            body = response["Body"]
            before = offset
            try:
                while True:
                    chunk = self._read(body, what)
                    if not chunk:
                        return
                    offset += len(chunk)
                    yield chunk
            except _Dropped as dropped:
                # Bounded like any retry: this many drops in a row without a byte read.
                drops = 1 if offset > before else drops + 1
                if drops >= self.options.retry_attempts:
                    raise LogStoreError(errno.EIO, f"{what}: the body broke {drops} times in a row "
                                                   f"({dropped.__cause__})") from dropped
                self.retries += 1
            finally:
                body.close()

    def _read(self, body: Any, what: str) -> bytes:
        try:
            chunk: bytes = self._sync(body.read, amt=READ_CHUNK)
        except Exception as err:
            if retriable(err):
                raise _Dropped from err
            raise translate(err, what) from err
        return chunk


class _Dropped(Exception):
    """A body broke mid-read: the stream asks again from its offset."""


__all__ = ["EXTRA_HINT", "MIN_PART", "S3Client", "S3Options", "import_s3fs", "retriable", "translate"]
