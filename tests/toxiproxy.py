"""A Toxiproxy server for fault tests: a real TCP proxy on loopback that can go silent.

The binary is built from its Go module by ``hack/toxiproxy/build.sh`` (a no-op once
built); its HTTP API is driven with the standard library. ``blackhole`` adds the
``timeout`` toxic with timeout 0 in both directions: Toxiproxy then reads every byte
each side sends and drops it, and closes nothing while the toxic is in place (its
source, ``toxics/timeout.go``). ``bandwidth`` with rate 0 is not used: it holds bytes
back rather than dropping them. Removing the toxic closes the connections it held
(``TimeoutToxic.Cleanup``), as a peer that comes back after a long silence would reset
them; tests therefore wait until the controller noticed the silence by itself
(``client_sockets`` shrinks) before they heal it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.pgserver import free_port

ROOT = Path(__file__).resolve().parents[1]
VERSION = "v2.12.0"  # as pinned in hack/toxiproxy/lib.sh
CACHE = Path(os.environ.get("BATCHDRAIN_CACHE", Path.home() / ".cache/batchdrain"))


def server_binary() -> Path:
    binary = CACHE / f"toxiproxy-{VERSION}" / "bin" / "toxiproxy-server"
    if not binary.exists():
        subprocess.run(["bash", str(ROOT / "hack/toxiproxy/build.sh")], check=True, timeout=1200)
    return binary


@dataclass
class Proxy:
    api: str
    name: str
    listen_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    def blackhole(self) -> None:
        """Every byte in either direction dropped from now on; nothing closed."""
        for stream in ("upstream", "downstream"):
            _call(self.api, "POST", f"/proxies/{self.name}/toxics",
                  {"name": f"blackhole-{stream}", "type": "timeout", "stream": stream, "toxicity": 1.0,
                   "attributes": {"timeout": 0}})

    def heal(self) -> None:
        for stream in ("upstream", "downstream"):
            _call(self.api, "DELETE", f"/proxies/{self.name}/toxics/blackhole-{stream}")

    def client_sockets(self) -> set[str]:
        """Local addresses of the established client connections to this proxy (``ss``)."""
        out = subprocess.run(["ss", "-tnH", "state", "established", f"( dport = :{self.listen_port} )"],
                             check=True, capture_output=True, text=True).stdout
        return {line.split()[-2] for line in out.splitlines() if line.strip()}


class Toxiproxy:
    """One ``toxiproxy-server`` on loopback, with a free API port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "toxiproxy.log").open("wb")
        self._proc = subprocess.Popen([str(server_binary()), "-host", "127.0.0.1", "-port", str(self.port)],
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                _call(self.api, "GET", "/version")
                break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def proxy(self, name: str, upstream: str) -> Proxy:
        port = free_port()
        _call(self.api, "POST", "/proxies",
              {"name": name, "listen": f"127.0.0.1:{port}", "upstream": upstream, "enabled": True})
        return Proxy(self.api, name, port)

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._log.close()


def _call(api: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{api}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None
