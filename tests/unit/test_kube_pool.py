"""The real seam's connection pool: sized to what a session holds, one TLS context for all.

(That connections are really reused against an API server is ``tests/e2e/test_api_connections.py``.)
"""

from __future__ import annotations

import ssl

import certifi
import urllib3

from batchdrain.kube.connection import POOL_MOST_CONNECTIONS, pool_size, share_tls


def test_the_pool_holds_three_connections_per_slot_and_the_sessions_own() -> None:
    assert pool_size(1) == 19
    assert pool_size(500) == 1516


def test_a_huge_parallelism_does_not_make_a_huge_pool() -> None:
    # urllib3 puts one placeholder per place into a new pool: 2^31 of them would never end.
    assert pool_size(2**31 - 1) == POOL_MOST_CONNECTIONS


def test_every_connection_shares_one_context_with_the_ca_given() -> None:
    manager = urllib3.PoolManager(cert_reqs=ssl.CERT_REQUIRED, ca_certs=certifi.where(), maxsize=10)
    share_tls(manager, maxsize=40)
    kw = manager.connection_pool_kw
    assert "ca_certs" not in kw and "cert_file" not in kw  # nothing left to load per connection
    context = kw["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0
    pool = manager.connection_from_url("https://kubernetes.invalid:6443")
    assert pool.pool is not None and pool.pool.maxsize == 40
    assert pool.conn_kw["ssl_context"] is context  # what each new connection is given


def test_no_verification_asked_stays_none() -> None:
    manager = urllib3.PoolManager(cert_reqs=ssl.CERT_NONE)
    share_tls(manager, maxsize=10)
    context = manager.connection_pool_kw["ssl_context"]
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
