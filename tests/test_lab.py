"""`make lab` starts for root and non-root users, prints its URL and serves the notebooks with the
project's kernel."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lab_command_adds_allow_root_only_for_root():
    mine = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True).stdout
    assert ("--allow-root" in mine) == (os.getuid() == 0)
    if os.getuid() == 0:
        other = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "make", "-n", "lab"],
                               cwd=ROOT, capture_output=True, text=True)
        assert other.returncode == 0 and "jupyter lab" in other.stdout and "--allow-root" not in other.stdout


def _get(url: str, attempts: int = 30):
    for i in range(attempts):
        try:
            return json.load(urllib.request.urlopen(url, timeout=30))
        except OSError as e:  # the URL is printed a moment before the port answers
            if i == attempts - 1:
                raise AssertionError(f"{url}: {e}") from None
            time.sleep(1)


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "jupyter").exists(), reason="needs the project's .venv")
def test_lab_starts_and_lists_the_notebooks_with_the_project_kernel():
    port = _free_port()
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_PORT={port}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url, seen, deadline = None, [], time.time() + 120
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            m = re.search(rf"http://(?:127\.0\.0\.1|localhost):{port}/lab\?token=(\w+)", line)
            if m:
                url = m
        assert url is not None, "".join(seen)[-2000:]
        token = url.group(1)
        base = f"http://127.0.0.1:{port}"
        listing = _get(f"{base}/api/contents?token={token}")
        names = {item["name"] for item in listing["content"]}
        assert {"00_data.ipynb", "02_classification.ipynb", "99_scorecard.ipynb"} <= names
        specs = _get(f"{base}/api/kernelspecs?token={token}")
        assert specs["kernelspecs"]["python3"]["spec"]["display_name"] == "Python 3 (cbirlib)"
        assert str(ROOT / ".venv") in specs["kernelspecs"]["python3"]["spec"]["argv"][0]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
