"""Resource limits (issue 16): ``--parallelism`` checked against the open-file and process
limits at start, and running out of either mid-session is the controller's failure.

Every case runs a real drain with the local executor in its own process, its limits set
with ``prlimit``; the process limit is not applied to root by the kernel, so those cases
run the controller as ``nobody`` (``setpriv``) in a directory it may write.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import SRC, attempts, cli, phases

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def _drain(*prefix: str, cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")}
    env.update(PYTHONPATH=SRC, HOME=str(cwd))
    env.pop("KUBECONFIG", None)
    return subprocess.run([*prefix, sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory ``nobody`` may write (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="batchdrain-limits-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _enqueue(capsys: pytest.CaptureFixture[str], url: str, phase: str, *command: str) -> None:
    code, _, err = cli(capsys, "enqueue", "--database-url", url, "--run-id", "r", "--phase-id", phase, "--",
                       *command)
    assert code == 0, err


def test_parallelism_past_the_open_file_limit_is_refused_at_start(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    _enqueue(capsys, url, "p", "true")
    done = _drain("prlimit", "--nofile=256", cwd=workdir,
                  args=["-m", "batchdrain.cli", "drain", "--database-url", url, "--parallelism", "50", "--quiet"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--parallelism 50 needs about" in lines[0]
    assert "over the open-file limit RLIMIT_NOFILE 256: raise it (ulimit -n" in lines[0]
    assert "or use --parallelism 2" in lines[0]  # (256 - open - 64) // 8
    assert attempts(url) == [] and phases(url)[("r", "p")].attempts == 0
    # within the limit the same drain runs
    done = _drain("prlimit", "--nofile=256", cwd=workdir,
                  args=["-m", "batchdrain.cli", "drain", "--database-url", url, "--parallelism", "2", "--quiet"])
    assert done.returncode == 0, done.stderr


def test_parallelism_past_the_process_limit_is_refused_at_start(open_dir, capsys):
    url = f"sqlite:///{open_dir / 'b.db'}"
    _enqueue(capsys, url, "p", "true")
    (open_dir / "b.db").chmod(0o666)
    done = _drain("prlimit", "--nproc=200", *NOBODY, cwd=open_dir,
                  args=["-m", "batchdrain.cli", "drain", "--database-url", url, "--parallelism", "100", "--quiet"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "over the process limit RLIMIT_NPROC 200: raise it (ulimit -u" in lines[0], lines[0]
    assert attempts(url) == []


# Run as the controller: at the first ``subprocess.Popen`` of the phase marked ``MARK``
# the limit named on the command line drops to what is in use (open files: the lowest
# free descriptor; processes: 1), so the spawn itself fails from the kernel (EMFILE on
# its open of /dev/null or its pipes; EAGAIN on its fork). The limit is restored at the
# next open of anything else, so the session can still write its records and report.
AT_SPAWN = """
import os, resource, sys
which = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}[sys.argv.pop(1)]
state = {"soft": None, "armed": False}

def hook(event, args):
    if event == "subprocess.Popen" and state["soft"] is None and "MARK" in " ".join(map(str, args[1] or ())):
        soft, hard = resource.getrlimit(which)
        low = 1
        if which == resource.RLIMIT_NOFILE:
            low = os.open(os.devnull, os.O_RDONLY)
            os.close(low)
        state["soft"], state["armed"] = soft, True
        resource.setrlimit(which, (low, hard))
    elif event == "open" and state["armed"] and args[0] != os.devnull:
        state["armed"] = False
        resource.setrlimit(which, (state["soft"], resource.getrlimit(which)[1]))

sys.addaudithook(hook)
from batchdrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _assert_halted_uncharged(url: str, stderr: str, fragment: str) -> None:
    errors = [ln for ln in stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and fragment in errors[0], stderr
    assert "Traceback" not in stderr
    stored = phases(url)
    assert stored[("r", "a")].state == "COMPLETE"
    # the starved phase: back in the queue, its attempt not counted, never a launch_error
    starved_phase = stored[("r", "b")]
    assert (starved_phase.state, starved_phase.attempts - starved_phase.retry_base) == ("QUEUED", 0)
    (starved,) = [a for a in attempts(url) if a.phase_id == "b"]
    assert starved.failure_class == "controller_interrupted"
    assert fragment in (starved.message or "")
    # the session stopped: nothing after it was started
    assert (stored[("r", "c")].state, stored[("r", "c")].attempts) == ("QUEUED", 0)
    assert [a.phase_id for a in attempts(url)] == ["a", "b"]


@pytest.mark.parametrize(("limit", "fragment"), [
    ("nofile", "the controller ran out of file descriptors (RLIMIT_NOFILE"),
    ("nproc", "the controller ran out of processes or threads (RLIMIT_NPROC"),
])
def test_running_out_at_a_spawn_halts_the_session_uncharged(open_dir, capsys, limit, fragment):
    url = f"sqlite:///{open_dir / 'b.db'}"
    _enqueue(capsys, url, "a", "true")
    _enqueue(capsys, url, "b", "echo", "MARK")
    _enqueue(capsys, url, "c", "true")
    (open_dir / "b.db").chmod(0o666)
    (open_dir / "at_spawn.py").write_text(AT_SPAWN, encoding="utf-8")
    # The process limit binds only a user that is not root.
    runner = NOBODY if limit == "nproc" else ()
    done = _drain(*runner, cwd=open_dir, args=[
        "at_spawn.py", limit, "drain", "--database-url", url, "--parallelism", "1", "--executor", "local",
        "--quiet", "--log-store", str(open_dir / "logs")])
    assert done.returncode == 1, done.stderr
    _assert_halted_uncharged(url, done.stderr, fragment)
