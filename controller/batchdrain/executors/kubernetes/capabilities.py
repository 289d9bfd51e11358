"""Server facts detected once per session: today, whether pod logs split by stream.

Split streams (``stream=Stdout|Stderr``) are alpha since Kubernetes 1.32 behind the
``PodLogsQuerySplitStreams`` gate; where the server does not serve them the session
stores one combined log per attempt and says so.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from batchdrain.domain import LogMode
from batchdrain.kube import BadRequest, KubeApi, KubeError, LogStreamName, NotFound

SPLIT_STREAMS_SINCE = (1, 32)


@dataclass(frozen=True)
class LogCapability:
    mode: LogMode
    reason: str
    server_version: str | None = None


def _version(version: dict[str, str]) -> tuple[int, int]:
    try:
        major = int(re.sub(r"\D", "", version.get("major", "0")) or 0)
        minor = int(re.sub(r"\D", "", version.get("minor", "0")) or 0)
    except ValueError:
        return 0, 0
    return major, minor


def detect_log_mode(api: KubeApi) -> LogCapability:
    """Split streams when the API server validates ``stream``; combined otherwise.

    A log request for a pod that does not exist tells, without needing a pod:
    with ``PodLogsQuerySplitStreams`` on, ``stream=Stderr`` plus ``tailLines`` is
    refused as Invalid (422: the two are mutually exclusive) before the pod is
    looked up; with the gate off, a ``stream`` is either refused outright or
    silently dropped, and then the answer is NotFound (404).
    """
    try:
        version = api.server_version()
    except KubeError as err:
        return LogCapability(LogMode.COMBINED, f"server version unknown ({err.message})")
    git_version = version.get("gitVersion")
    major, minor = _version(version)
    if (major, minor) < SPLIT_STREAMS_SINCE:
        return LogCapability(LogMode.COMBINED, f"server {major}.{minor} predates split log streams", git_version)
    mode, reason = _probe(api)
    return LogCapability(mode, reason, git_version)


def _probe(api: KubeApi) -> tuple[LogMode, str]:
    probe = f"batchdrain-probe-{uuid.uuid4().hex[:12]}"
    for tail, if_refused, if_missing in (
        (None, "stream parameter refused", None),
        (1, None, "stream parameter ignored by the server"),
    ):
        try:
            api.stream_pod_log(probe, container=None, follow=False, timestamps=False,
                               stream=LogStreamName.STDERR, tail_lines=tail).close()
        except BadRequest:
            if if_refused is not None:
                return LogMode.COMBINED, if_refused
            return LogMode.SPLIT, "server validates the stream parameter"
        except NotFound:
            if if_missing is not None:
                return LogMode.COMBINED, if_missing
        except KubeError as err:
            return LogMode.COMBINED, f"probe failed: {err.message}"
    return LogMode.COMBINED, "probe inconclusive"
