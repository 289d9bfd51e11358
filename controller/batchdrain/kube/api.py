"""The Kubernetes seam as a Protocol: the few verbs batchdrain needs, over plain dicts.

Objects are JSON-shaped dicts exactly as the API server sends them (camelCase keys,
RFC 3339 strings), so the executor, the classifier and the tests never touch client
model classes, and the in-memory fake in ``tests/unit/fake_kube.py`` can stand in for
the real implementation (``batchdrain.kube.client``) without any mocking of HTTP.

Streams (watches, pod logs) are returned only once the request has been accepted, so
an error status is raised by the call itself (where the retry policy can see it) and
not at the first iteration; ``close()`` may be called from another thread to abort a
blocked read, which is how a waiting attempt is interrupted without a timeout poll.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any, Protocol, TypeVar

KubeObject = dict[str, Any]
# (type, object): type is ADDED, MODIFIED, DELETED or BOOKMARK; ERROR never escapes the
# seam (410 is raised as Gone, anything else as the matching KubeError).
WatchEvent = tuple[str, KubeObject]

T_co = TypeVar("T_co", covariant=True)


# Kubernetes' own spelling of the pod log query parameter values.
class LogStreamName(StrEnum):
    STDOUT = "Stdout"
    STDERR = "Stderr"


class Stream(Protocol[T_co]):
    """An open response: iterate it once; ``close()`` is safe from any thread."""

    def __iter__(self) -> Iterator[T_co]: ...

    def close(self) -> None: ...


class KubeApi(Protocol):
    """Namespaced operations; the namespace is fixed when the seam is built."""

    @property
    def namespace(self) -> str: ...

    def create_job(self, body: KubeObject) -> KubeObject:
        """Create a Job; a Job of that name already there raises ``AlreadyExists``."""

    def get_job(self, name: str) -> KubeObject: ...

    def delete_job(self, name: str, *, propagation: str = "Background") -> None: ...

    def get_pod(self, name: str) -> KubeObject: ...

    def list_jobs(self, label_selector: str) -> tuple[list[KubeObject], str]:
        """(items, resourceVersion of the list) so a watch can start right after it."""

    def list_pods(self, label_selector: str) -> tuple[list[KubeObject], str]: ...

    def watch_jobs(self, label_selector: str, *, resource_version: str, timeout_seconds: int) -> Stream[WatchEvent]:
        """Changes after ``resource_version``, BOOKMARKs included; raises Gone on 410."""

    def watch_pods(self, label_selector: str, *, resource_version: str, timeout_seconds: int) -> Stream[WatchEvent]: ...

    def stream_pod_log(
        self,
        name: str,
        *,
        container: str | None,
        follow: bool,
        timestamps: bool,
        since_time: str | None = None,
        stream: LogStreamName | None = None,
        tail_lines: int | None = None,
    ) -> Stream[bytes]:
        """Raw log bytes in chunks of any size (lines may be split across chunks)."""

    def list_events(self, *, name: str, uid: str | None = None) -> list[KubeObject]:
        """Events whose involvedObject has this name (and uid, when given)."""

    def create_event(self, *, involved: KubeObject, reason: str, message: str, warning: bool = False) -> None:
        """Record a core/v1 Event on ``involved`` (a Job), so `kubectl describe` tells the story."""

    def remove_pod_finalizer(self, name: str, finalizer: str) -> None:
        """Drop one finalizer from a pod; idempotent (absent already is fine)."""

    def delete_pod(self, name: str, *, uid: str | None = None) -> None:
        """Delete a pod (only the one with ``uid``, when given: never a namesake)."""

    def evict_pod(self, name: str) -> None: ...

    def server_version(self) -> dict[str, str]: ...

    def namespace_exists(self) -> bool | None:
        """None when the session may not read Namespace objects and cannot tell."""

    def kueue_version(self) -> str | None:
        """The served version of Kueue's API group (``kueue.x-k8s.io/v1beta2``), None if not installed."""
        ...

    def local_queue_exists(self, name: str, *, group_version: str) -> bool | None:
        """Whether Kueue's LocalQueue ``name`` is in the namespace; None when we may not read it."""
        ...

    def can_i(self, verb: str, resource: str, *, subresource: str | None = None) -> bool:
        """SelfSubjectAccessReview in the seam's namespace."""
