"""The Kubernetes seam: the only package that imports the ``kubernetes`` client.

``KubeApi`` (``api``) is the Protocol executors receive; ``client.KubernetesApi`` is
the real one, ``retry.RetryingKubeApi`` puts the single retry policy in front of any
implementation, ``watch.Reflector`` turns list+watch into a stream of events, and
``errors`` is our own exception tree. ``connect()`` assembles the real, retrying seam.
"""

from __future__ import annotations

from batchdrain.kube.api import KubeApi, KubeObject, LogStreamName, Stream, WatchEvent
from batchdrain.kube.errors import (
    AlreadyExists,
    BadRequest,
    ConfigError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    ServerError,
    Silent,
    TooManyRequests,
    Unauthorized,
    Unreachable,
)
from batchdrain.kube.retry import RetryHook, RetryingKubeApi
from batchdrain.settings import Settings

__all__ = [
    "AlreadyExists",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeApi",
    "KubeError",
    "KubeObject",
    "LogStreamName",
    "NotFound",
    "RetryHook",
    "RetryingKubeApi",
    "ServerError",
    "Silent",
    "Stream",
    "TooManyRequests",
    "Unauthorized",
    "Unreachable",
    "WatchEvent",
    "connect",
]


def connect(settings: Settings, *, on_retry: RetryHook | None = None) -> RetryingKubeApi:
    """The real seam for these settings, behind the retry policy.

    The client is imported here, lazily, so that merely importing the seam (for the
    Protocol or the errors) does not load the kubernetes package.
    """
    from batchdrain.kube.client import connect as connect_raw

    return RetryingKubeApi(connect_raw(settings), settings, on_retry=on_retry)
