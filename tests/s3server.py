"""A real S3 server for tests: SeaweedFS's S3 gateway, started by ``hack/s3/up.sh``.

Not a mock: the same ``weed`` binary an operator would run, built from its Go module
(``hack/s3/build.sh``), with static credentials configured on the server. Each test
session gets its own state directory and free ports, so two sessions never meet; the
server is stopped and its data removed at the end. A server that cannot start is an
error with its log's tail, never a skip.

``BATCHDRAIN_TEST_S3_ENDPOINT`` (with the ``AWS_*`` credentials in the environment)
points the tests at a server someone else runs instead.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HACK = Path(__file__).resolve().parents[1] / "hack" / "s3"
ACCESS_KEY = "batchdrain"
SECRET_KEY = "batchdrain-test-secret"
BUCKET = "batchdrain"  # created by up.sh


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str = BUCKET
    state: Path | None = None  # None: not ours to stop

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def stop(self) -> None:
        if self.state is None:
            return
        subprocess.run(["bash", str(HACK / "down.sh"), "--wipe"], env=self._script_env(), check=True,
                       capture_output=True, timeout=60)

    def _script_env(self) -> dict[str, str]:
        assert self.state is not None
        return {**os.environ, "BATCHDRAIN_S3_STATE": str(self.state)}


def _free_pair(host: str, taken: set[int]) -> int:
    """A port free on ``host`` whose gRPC twin (``+10000``, weed's rule) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        if port in taken or port + 10000 in taken:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind((host, candidate))
        except OSError:
            continue
        taken.update((port, port + 10000))
        return port
    raise RuntimeError("no free port pair for the S3 server")


def start_s3(host: str = "127.0.0.1") -> S3Server:
    given = os.environ.get("BATCHDRAIN_TEST_S3_ENDPOINT")
    if given:
        return S3Server(given, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                        os.environ.get("BATCHDRAIN_TEST_S3_BUCKET", BUCKET))
    state = Path(tempfile.mkdtemp(prefix="batchdrain-s3-"))
    taken: set[int] = set()
    ports = {name: _free_pair(host, taken) for name in ("PORT", "MASTER_PORT", "VOLUME_PORT", "FILER_PORT")}
    env = {**os.environ, "BATCHDRAIN_S3_STATE": str(state), "S3_BIND": host, "BATCHDRAIN_S3_BUCKET": BUCKET,
           "BATCHDRAIN_S3_ACCESS_KEY": ACCESS_KEY, "BATCHDRAIN_S3_SECRET_KEY": SECRET_KEY,
           **{f"BATCHDRAIN_S3_{name}": str(port) for name, port in ports.items()}}
    done = subprocess.run(["bash", str(HACK / "up.sh")], env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the S3 server (hack/s3/up.sh) did not start:\n{done.stdout[-2000:]}\n"
                           f"{done.stderr[-4000:]}")
    return S3Server(f"http://{host}:{ports['PORT']}", ACCESS_KEY, SECRET_KEY, BUCKET, state)
