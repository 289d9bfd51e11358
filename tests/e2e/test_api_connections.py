"""The real seam reuses its TLS connections, as a controller at P=500 must.

The pool kept urllib3's default of 10 idle connections: with 500 attempts at once, each
holding two followed logs, nearly every connection given back was dropped and the next
call paid a new TLS connection, with the CA, certificate and key read from disk again
for each. Counted here as TLS handshakes against the real API server.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

from batchdrain.kube.client import KubernetesApi
from batchdrain.kube.connection import load_client, pool_size
from batchdrain.settings import Settings
from tests.e2e.conftest import Cluster


class _Handshakes:
    """Counts the TLS connections the seam opens (urllib3 reconnects a dropped one in place)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._wrap = context.wrap_socket
        context.wrap_socket = self._counted  # type: ignore[method-assign]

    def _counted(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        with self._lock:
            self.count += 1
        return self._wrap(*args, **kwargs)


def _seam(cluster: Cluster, namespace: str, parallelism: int) -> tuple[KubernetesApi, _Handshakes]:
    settings = Settings(kubeconfig=cluster.kubeconfig, namespace=namespace, parallelism=parallelism)
    api_client, ns = load_client(settings)
    context = api_client.rest_client.pool_manager.connection_pool_kw["ssl_context"]
    return KubernetesApi(api_client, ns), _Handshakes(context)


def _watch_to_its_end(api: KubernetesApi) -> None:
    _, version = api.list_pods("batchdrain.io/nothing=here")
    for _ in api.watch_pods("batchdrain.io/nothing=here", resource_version=version, timeout_seconds=1):
        pass


def _together(start: threading.Barrier, api: KubernetesApi, done: list[bool]) -> None:
    start.wait(timeout=60)  # all open together, so each needs a connection of its own
    _watch_to_its_end(api)
    done.append(True)


def test_watches_the_server_ended_leave_their_connection_to_the_next_call(cluster: Cluster, namespace: str) -> None:
    api, handshakes = _seam(cluster, namespace, parallelism=1)
    for _ in range(6):
        _watch_to_its_end(api)
    api.list_jobs("batchdrain.io/nothing=here")
    assert handshakes.count == 1


def test_as_many_streams_at_once_as_the_pool_holds_are_all_kept(cluster: Cluster, namespace: str) -> None:
    parallelism = 5
    at_once = pool_size(parallelism) - 1  # more than urllib3's default pool of 10
    api, handshakes = _seam(cluster, namespace, parallelism)
    done: list[bool] = []
    for _ in range(2):
        start = threading.Barrier(at_once)
        threads = [threading.Thread(target=_together, args=(start, api, done)) for _ in range(at_once)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(done) == 2 * at_once  # every stream ran to its end (a failed one would count none)
    # The first round makes at most one per stream; the second reuses them all.
    assert handshakes.count <= at_once
