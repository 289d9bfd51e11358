"""How the real seam reaches the API server: kubeconfig or in-cluster, TLS and sockets.

``load_client`` resolves the cluster the way kubectl does and shapes the connections
every call of ``KubernetesApi`` uses: one SSLContext for all of them, a pool as large as
what a session holds open, keepalive and ``TCP_USER_TIMEOUT`` on each socket, and no
urllib3 retries (retrying is ``batchdrain.kube.retry``'s alone).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs

from batchdrain.settings import Settings

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Keepalive probes after 10 s idle, every 5 s, 3 unanswered: ~25 s; and sent data
# unacknowledged for 30 s drops the connection (TCP_USER_TIMEOUT, Linux).
KEEPALIVE = (10, 5, 3)
TCP_USER_TIMEOUT_MS = 30_000

# Connections beyond three per phase slot: the watches, preflight and cleanup calls.
POOL_SPARE_CONNECTIONS = 16
# urllib3 fills a pool with one placeholder per place when it is made, so a huge
# --parallelism must not become a huge pool; 8,192 is more descriptors than a
# controller gets by default (and the resource check asks 6 per slot).
POOL_MOST_CONNECTIONS = 8192


def load_client(settings: Settings) -> tuple[Any, str]:
    """(ApiClient, namespace) the way kubectl resolves them.

    ``--kubeconfig`` / ``KUBECONFIG`` / ``~/.kube/config`` with ``--context``; the
    namespace from ``--namespace``, else the context's, else ``default``. Inside a pod
    with no kubeconfig given, the in-cluster service account and its namespace.
    """
    configuration = k8s_client.Configuration()
    in_cluster = (
        settings.kubeconfig is None
        and not os.environ.get("KUBECONFIG")
        and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    if in_cluster:
        k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
        namespace = settings.namespace or (
            SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else "default"
        )
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=settings.kubeconfig,
            context=settings.context,
            client_configuration=configuration,
        )
        namespace = settings.namespace or _context_namespace(settings)
    # One retry layer only (batchdrain.kube.retry); urllib3 must not retry on its own.
    configuration.retries = False
    configuration.socket_options = socket_options()
    api_client = k8s_client.ApiClient(configuration)
    share_tls(api_client.rest_client.pool_manager, maxsize=pool_size(settings.parallelism))
    return api_client, namespace


def pool_size(parallelism: int) -> int:
    """Connections kept for reuse: as many as the controller holds open at once.

    Each running attempt holds up to two followed logs, plus one short call at a time,
    and the session its two watches. A pool smaller than that drops every connection
    a follow gives back, and the next call pays a new TLS handshake for it.
    """
    return min(3 * parallelism + POOL_SPARE_CONNECTIONS, POOL_MOST_CONNECTIONS)


def share_tls(manager: urllib3.PoolManager, *, maxsize: int) -> None:
    """Make every connection of ``manager`` use one SSLContext loaded once.

    Given file names, urllib3 builds a context per connection and reads the CA, the
    client certificate and its key from disk for each (about a third of a new
    connection's time in a profile on the kwok rig, the handshake the rest). The
    verification asked for is unchanged:
    the same CA (or the system's), certificate, hostname check and ``cert_reqs``.
    """
    kw = manager.connection_pool_kw
    context = create_urllib3_context(cert_reqs=resolve_cert_reqs(kw.get("cert_reqs")))
    ca_file, ca_data = kw.pop("ca_certs", None), kw.pop("ca_cert_data", None)
    if ca_file or ca_data:
        context.load_verify_locations(cafile=ca_file, cadata=ca_data)
    else:
        context.load_default_certs()
    cert_file, key_file = kw.pop("cert_file", None), kw.pop("key_file", None)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    kw["ssl_context"] = context
    kw["maxsize"] = maxsize


def socket_options() -> list[tuple[int, int, int]]:
    """urllib3's own options (no Nagle) plus our keepalive and, on Linux, TCP_USER_TIMEOUT."""
    idle, interval, count = KEEPALIVE
    options = [*urllib3.connection.HTTPConnection.default_socket_options,
               (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count),
                        ("TCP_USER_TIMEOUT", TCP_USER_TIMEOUT_MS)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


def _context_namespace(settings: Settings) -> str:
    contexts, active = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=settings.kubeconfig
    )
    chosen = active
    if settings.context is not None:
        chosen = next((c for c in contexts if c.get("name") == settings.context), active)
    namespace = (chosen or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else "default"
