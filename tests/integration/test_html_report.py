"""The HTML report of a real drain, rendered by headless Chromium (Debian's package)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.helpers import attempts, cli


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium not found: apt-get install chromium (hack/deps.sh does)", pytrace=False)
    return found


def test_html_report_renders_with_histogram_and_one_bar_per_attempt(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    for i in range(6):
        code = f"import sys, time; time.sleep(0.{i + 1}); sys.exit({int(i % 3 == 2)})"
        assert cli(capsys, "enqueue", "--database-url", url, "--run-id", "html", "--phase-id", f"p{i}", "--",
                   "python3", "-c", code)[0] == 0
    assert cli(capsys, "drain", "--database-url", url, "--executor", "local", "--quiet", "--parallelism", "3")[0] == 0
    session_id = attempts(url)[0].session_id
    out = workdir / "report.html"
    assert cli(capsys, "report", session_id, "--database-url", url, "--format", "html", "-o", str(out))[0] == 0
    page = out.read_text("utf-8")
    timeline = re.search(r'<svg id="timeline".*?</svg>', page, re.S)
    assert timeline and timeline.group(0).count('class="timeline-bar"') == 6
    assert page.count('class="hist-bar"') == 20 and "<script" not in page
    png = workdir / "report.png"
    profile = workdir / "chromium-profile"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", "--window-size=1200,1400", f"--screenshot={png}",
                    out.as_uri()], check=True, capture_output=True, timeout=120)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a blank page compresses to a few KB
    keep = Path("/tmp/batchdrain-report-screenshot.png")
    keep.write_bytes(data)
