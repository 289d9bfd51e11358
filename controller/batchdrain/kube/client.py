"""The real ``KubeApi`` over the official ``kubernetes`` client: the only importer of it.

Every verb goes through one ``_request()``: it serialises with the client's
``ApiClient`` (so kubeconfig auth, exec plugins, token refresh and TLS all work as in
kubectl), sends with ``_preload_content`` semantics (raw urllib3 response), and parses
JSON itself. That keeps objects as the plain camelCase dicts the rest of batchdrain
uses and skips the client's model deserialisation, which costs more CPU than the
rest of an attempt. Errors are mapped to ``batchdrain.kube.errors`` at this one place.

How the client reaches the server (kubeconfig, TLS, pool, sockets, no urllib3
retries: retrying is the job of ``batchdrain.kube.retry`` alone) is ``connection``'s.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from typing import Any
from urllib.parse import quote

import urllib3
import yaml
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from batchdrain.kube.api import KubeObject, LogStreamName
from batchdrain.kube.connection import load_client
from batchdrain.kube.errors import ConfigError, KubeError, Unreachable
from batchdrain.kube.responses import LogStream, WatchStream, error_from_body
from batchdrain.settings import Settings

# How long each read may wait for the API server's next byte: the bound on noticing a
# silent server (packets dropped, a proxy that stopped forwarding, nothing closed).
# TCP keepalive (``connection.KEEPALIVE``) catches a dead peer's kernel on its own, but a proxy or
# load balancer in between answers probes for the server, so only reads can tell.
CONNECT_TIMEOUT = 10.0
# An answer to one call: no call batchdrain makes takes seconds on a healthy server.
REQUEST_TIMEOUT = 30.0
# A watch is quiet while nothing changes: a read that times out (``Silent``) only makes
# the reflector watch again from its resourceVersion, so this bounds each wait.
WATCH_READ_TIMEOUT = 30.0
# A followed log is quiet while the phase prints nothing; a read that times out only
# makes the pump reconnect from its cursor. Longer than a watch's: every running pod
# has a follow, and each quiet one reconnects once per this.
LOG_READ_TIMEOUT = 60.0

_GROUPS = {"jobs": "batch", "cronjobs": "batch"}


class KubernetesApi:
    """``KubeApi`` over the official client. Wrap it in ``RetryingKubeApi`` to use it."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self._client = api_client
        self._namespace = namespace

    @property
    def namespace(self) -> str:
        return self._namespace

    # -- the one request function -------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | tuple[float, float] = (CONNECT_TIMEOUT, REQUEST_TIMEOUT),
        creating: bool = False,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        try:
            verb, url, header_params, payload, _ = self._client.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._client.call_api(
                verb, url, header_params=header_params, body=payload, _request_timeout=timeout
            )
        except ApiException as err:
            raise error_from_body(
                int(err.status or 0), err.body or err.reason, err.headers, creating=creating
            ) from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise Unreachable(f"{method} {path}: {err}") from err
        raw = response.response
        if not 200 <= response.status <= 299:
            try:
                data = raw.data
            finally:
                raw.release_conn()
            raise error_from_body(response.status, data, raw.headers, creating=creating)
        return raw

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        raw = self._send(method, path, **kwargs)
        try:
            data = raw.data
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise Unreachable(f"{method} {path}: reading the response: {err}") from err
        finally:
            raw.release_conn()
        return json.loads(data) if data else {}

    def _path(self, template: str, **names: str) -> str:
        values = {k: quote(v, safe="") for k, v in names.items()}
        return template.format(ns=quote(self._namespace, safe=""), **values)

    # -- Jobs ---------------------------------------------------------------------

    def create_job(self, body: KubeObject) -> KubeObject:
        path = self._path("/apis/batch/v1/namespaces/{ns}/jobs")
        result: KubeObject = self._json("POST", path, body=body, creating=True)
        return result

    def get_job(self, name: str) -> KubeObject:
        result: KubeObject = self._json("GET", self._path("/apis/batch/v1/namespaces/{ns}/jobs/{name}", name=name))
        return result

    def delete_job(self, name: str, *, propagation: str = "Background") -> None:
        self._json(
            "DELETE",
            self._path("/apis/batch/v1/namespaces/{ns}/jobs/{name}", name=name),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
        )

    def list_jobs(self, label_selector: str) -> tuple[list[KubeObject], str]:
        return self._list(self._path("/apis/batch/v1/namespaces/{ns}/jobs"), label_selector)

    def watch_jobs(self, label_selector: str, *, resource_version: str, timeout_seconds: int) -> WatchStream:
        return self._watch(
            self._path("/apis/batch/v1/namespaces/{ns}/jobs"),
            label_selector,
            resource_version,
            timeout_seconds,
        )

    # -- Pods ---------------------------------------------------------------------

    def get_pod(self, name: str) -> KubeObject:
        result: KubeObject = self._json("GET", self._path("/api/v1/namespaces/{ns}/pods/{name}", name=name))
        return result

    def list_pods(self, label_selector: str) -> tuple[list[KubeObject], str]:
        return self._list(self._path("/api/v1/namespaces/{ns}/pods"), label_selector)

    def watch_pods(self, label_selector: str, *, resource_version: str, timeout_seconds: int) -> WatchStream:
        return self._watch(
            self._path("/api/v1/namespaces/{ns}/pods"),
            label_selector,
            resource_version,
            timeout_seconds,
        )

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
    ) -> LogStream:
        query: list[tuple[str, Any]] = []
        if container:
            query.append(("container", container))
        if follow:
            query.append(("follow", "true"))
        if timestamps:
            query.append(("timestamps", "true"))
        if since_time:
            query.append(("sinceTime", since_time))
        if stream is not None:
            query.append(("stream", stream.value))
        if tail_lines is not None:
            query.append(("tailLines", tail_lines))
        raw = self._send(
            "GET",
            self._path("/api/v1/namespaces/{ns}/pods/{name}/log", name=name),
            query=query,
            timeout=(CONNECT_TIMEOUT, LOG_READ_TIMEOUT),
        )
        return LogStream(raw)

    def list_events(self, *, name: str, uid: str | None = None) -> list[KubeObject]:
        selector = f"involvedObject.name={name}"
        if uid:
            selector += f",involvedObject.uid={uid}"
        data = self._json(
            "GET",
            self._path("/api/v1/namespaces/{ns}/events"),
            query=[("fieldSelector", selector)],
        )
        items: list[KubeObject] = data.get("items") or []
        return items

    def create_event(self, *, involved: KubeObject, reason: str, message: str, warning: bool = False) -> None:
        meta = involved.get("metadata") or {}
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._json(
            "POST",
            self._path("/api/v1/namespaces/{ns}/events"),
            body={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta.get('name')}.", "namespace": self._namespace},
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion", "batch/v1"),
                    "kind": involved.get("kind", "Job"),
                    "name": meta.get("name"),
                    "namespace": self._namespace,
                    "uid": meta.get("uid"),
                },
                "reason": reason,
                "message": message[:1024],
                "type": "Warning" if warning else "Normal",
                "source": {"component": "batchdrain"},
                "reportingComponent": "batchdrain",
                "reportingInstance": socket.gethostname(),
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )

    def remove_pod_finalizer(self, name: str, finalizer: str) -> None:
        # A strategic-merge directive removes the value wherever it sits, with no
        # read-modify-write race against the Job controller's own finalizer.
        self._json(
            "PATCH",
            self._path("/api/v1/namespaces/{ns}/pods/{name}", name=name),
            body={"metadata": {"$deleteFromPrimitiveList/finalizers": [finalizer]}},
            content_type="application/strategic-merge-patch+json",
        )

    def delete_pod(self, name: str, *, uid: str | None = None) -> None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        self._json("DELETE", self._path("/api/v1/namespaces/{ns}/pods/{name}", name=name), body=body)

    def evict_pod(self, name: str) -> None:
        self._json(
            "POST",
            self._path("/api/v1/namespaces/{ns}/pods/{name}/eviction", name=name),
            body={
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": name, "namespace": self._namespace},
            },
        )

    # -- cluster facts (preflight) --------------------------------------------------

    def server_version(self) -> dict[str, str]:
        data = self._json("GET", "/version")
        return {str(k): str(v) for k, v in data.items()}

    def namespace_exists(self) -> bool | None:
        try:
            self._json("GET", self._path("/api/v1/namespaces/{ns}"))
        except KubeError as err:
            if err.status == 404:
                return False
            if err.status == 403:
                return None  # a namespaced Role cannot read Namespace objects
            raise
        return True

    def kueue_version(self) -> str | None:
        try:
            group = self._json("GET", "/apis/kueue.x-k8s.io")
        except KubeError as err:
            if err.status == 404:
                return None
            raise
        preferred = group.get("preferredVersion") or {}
        return str(preferred["groupVersion"]) if preferred.get("groupVersion") else None

    def local_queue_exists(self, name: str, *, group_version: str) -> bool | None:
        try:
            self._json("GET", self._path(f"/apis/{group_version}/namespaces/{{ns}}/localqueues/{name}"))
        except KubeError as err:
            if err.status == 404:
                return False
            if err.status == 403:
                return None
            raise
        return True

    def can_i(self, verb: str, resource: str, *, subresource: str | None = None) -> bool:
        attributes: dict[str, str] = {
            "namespace": self._namespace,
            "verb": verb,
            "resource": resource,
            "group": _GROUPS.get(resource, ""),
        }
        if subresource:
            attributes["subresource"] = subresource
        review = self._json(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            },
        )
        return bool((review.get("status") or {}).get("allowed"))

    # -- helpers ------------------------------------------------------------------

    def _list(self, path: str, label_selector: str) -> tuple[list[KubeObject], str]:
        items: list[KubeObject] = []
        token: str | None = None
        resource_version = ""
        # Paged so a big namespace is not one huge response; bounded by the server's
        # continue tokens (each page strictly advances).
        while True:
            query: list[tuple[str, Any]] = [("labelSelector", label_selector), ("limit", 500)]
            if token:
                query.append(("continue", token))
            data = self._json("GET", path, query=query)
            items.extend(data.get("items") or [])
            metadata = data.get("metadata") or {}
            resource_version = str(metadata.get("resourceVersion") or resource_version)
            token = metadata.get("continue")
            if not token:
                return items, resource_version

    def _watch(self, path: str, label_selector: str, resource_version: str, timeout_seconds: int) -> WatchStream:
        raw = self._send(
            "GET",
            path,
            query=[
                ("labelSelector", label_selector),
                ("watch", "true"),
                ("allowWatchBookmarks", "true"),
                ("resourceVersion", resource_version),
                ("timeoutSeconds", timeout_seconds),
            ],
            # The server ends the watch after timeoutSeconds; the read timeout bounds
            # each silence (the reflector resumes after it, see ``Silent``).
            timeout=(CONNECT_TIMEOUT, WATCH_READ_TIMEOUT),
        )
        return WatchStream(raw)


def connect(settings: Settings) -> KubernetesApi:
    """The real seam for these settings (not yet wrapped in the retry policy)."""
    try:
        api_client, namespace = load_client(settings)
    except (k8s_config.ConfigException, yaml.YAMLError, OSError, TypeError, AttributeError) as err:
        where = settings.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"kubeconfig {where}: {first}") from err
    return KubernetesApi(api_client, namespace)
