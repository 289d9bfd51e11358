"""Our own error tree at the Kubernetes seam, so nothing above it catches client types.

::

    KubeError                  any failure talking to the API server
    ├── NotFound               404
    ├── Conflict               409
    │   └── AlreadyExists      409 on create: the object is there already (adopt, never retry)
    ├── Gone                   410: a watch's resourceVersion is too old (relist)
    ├── TooManyRequests        429 (retried, honouring Retry-After)
    ├── ServerError            5xx (retried)
    ├── Unreachable            connection refused/reset, timeouts, TLS (retried)
    │   └── Silent             an open stream sent nothing for its read timeout (resumed)
    ├── Unauthorized           401
    ├── Forbidden              403 (RBAC: the session cannot do this)
    └── BadRequest             400
        └── Invalid            422 (validation refused the request)

Each carries the HTTP ``status`` (0 when no response came back), the API ``reason``
and, for 429/503, the server's ``retry_after`` in seconds. The seam raises them
``from`` the client error so the original stays in the traceback.
"""

from __future__ import annotations

from typing import Any


class KubeError(Exception):
    """A failed API call. ``retriable`` says whether the one retry policy may try again."""

    retriable = False

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        reason: str | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.details = details

    def as_status(self) -> dict[str, Any]:
        """JSON-safe summary for an attempt's ``raw_status``."""
        return {
            "error": type(self).__name__,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
        }


class NotFound(KubeError):
    pass


class ConfigError(KubeError):
    """No usable cluster configuration: kubeconfig missing, unparsable, or no such context."""


class Conflict(KubeError):
    pass


class AlreadyExists(Conflict):
    pass


class Gone(KubeError):
    pass


class TooManyRequests(KubeError):
    retriable = True


class ServerError(KubeError):
    retriable = True


class Unreachable(KubeError):
    retriable = True


class Silent(Unreachable):
    """A watch or log stream that was open sent no byte for its read timeout.

    A quiet watch or a phase that prints nothing looks the same as a peer gone silent,
    so the reader resumes (from its resourceVersion, from its log cursor) instead of
    counting a failure: a silent peer then fails at the resume, under the retry policy.
    """


class Unauthorized(KubeError):
    pass


class Forbidden(KubeError):
    pass


class BadRequest(KubeError):
    pass


class Invalid(BadRequest):
    pass


# The HTTP statuses with a class of their own; any other 5xx is ServerError, the rest KubeError.
_CLASS_FOR_STATUS: dict[int, type[KubeError]] = {
    0: Unreachable,  # no response came back
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def error_for_status(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    retry_after: float | None = None,
    creating: bool = False,
    details: dict[str, Any] | None = None,
) -> KubeError:
    """Map an HTTP status to our tree. ``creating``: a 409 means AlreadyExists, not Conflict."""
    kind: type[KubeError]
    if status == 409 and (creating or reason == "AlreadyExists"):
        kind = AlreadyExists
    elif status >= 500:
        kind = ServerError
    else:
        kind = _CLASS_FOR_STATUS.get(status, KubeError)
    return kind(message, status=status, reason=reason, retry_after=retry_after, details=details)
