"""`gbifdl sandbox serve` serves GBIF's API on loopback and ends with a JSON summary when stopped."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sandbox_serve_answers_and_stops_cleanly():
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gbifdl_assets.cli",
            "sandbox",
            "serve",
            "--port",
            str(port),
            "--occurrences",
            "2000",
            "--seed",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = requests.get(
                    f"http://127.0.0.1:{port}/v1/occurrence/search", params={"limit": 2}, timeout=2
                )
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        assert page.json()["count"] == 2000
        assert len(page.json()["results"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["ok"] and summary["url"] == f"http://127.0.0.1:{port}"


def test_sandbox_serve_media_hosts_flag_names_its_hosts_and_refuses_a_bad_list():
    port = _free_port()
    bad = subprocess.run(
        [sys.executable, "-m", "gbifdl_assets.cli", "sandbox", "serve", "--port", str(port)]
        + ["--media-hosts", '[{"bad": 1}]'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "--media-hosts:" in bad.stderr and "name" in bad.stderr and "Traceback" not in bad.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "gbifdl_assets.cli", "sandbox", "serve", "--port", str(port)]
        + ["--occurrences", "2000", "--media-hosts", "default"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = ""
        deadline = time.monotonic() + 60
        while "Media host" not in banner:
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, proc.stderr.read()
            banner += line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert "--resolve inaturalist-open-data.sandbox.test=127.0.0." in banner
