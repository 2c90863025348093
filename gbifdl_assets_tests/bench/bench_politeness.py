"""Benchmark: politeness toward hosts with known allowances (issue 17).

Four media hosts of the sandbox, each on its own loopback address: three allow 20, 50 and 200
requests in any one-second window and answer 429 with ``Retry-After: 1`` beyond that, one has no
limit. The manifest (``BENCH_POLITE_IMAGES``, 20,000 by default) is shuffled across them: a quarter
on the unlimited host, the rest in proportion to the allowances (20:50:200), so that every limited
host has work for the whole run. Targets (issue 17): throughput at least 90 % of the summed
allowance, at most 2 % of requests answered 429 over the whole run, and no host above its allowance
over any 10-second window after the first 10 s.

* **Server**: the sandbox app (``SandboxConfig.media_hosts``) in its own process, uvicorn httptools +
  uvloop, one socket per host address at the same port. A thin ASGI wrapper logs every media
  request's host, time (CLOCK_MONOTONIC, shared with this process) and status, so the numbers are
  what the hosts saw, not what the client believes it sent. 500 distinct images (the server's
  render cache holds them) made into N distinct URLs with ``?r=k``.
* **Ours**: :func:`download_images` with its defaults (one process per core, 2 here; robots.txt on;
  same-bytes de-duplication on), a fresh store (nothing learned from an earlier run), URLs by IP
  address (127.0.0.41-44) so that img2dataset can use the same ones.
* **img2dataset 1.47.0** (its fastest configuration: 2 processes x 64 threads, no re-encoding,
  ``retries=0`` as it ships) on the same URLs, from its own virtualenv (``$BENCH_CACHE/images/anchors``,
  shared with bench_images.py; created with pip on first use). It has no politeness, so its
  throughput is what the hosts let through, and its 429s are images lost.
* Per tool and host: requests, 429s, images served, the host's busy span, served images/s over that
  span (its share of the allowance), and the largest request rate (429s included) over any 10-s
  window starting at least 10 s after the run's first request.

Results: gbifdl_assets_tests/bench/results/politeness.json. Run:
``BENCH_POLITE_IMAGES=8000 .venv/bin/python -m pytest -o python_files='bench_*.py'
gbifdl_assets_tests/bench/bench_politeness.py -s`` (``make bench`` runs it with 20,000).
"""

from __future__ import annotations

import bisect
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

N_IMAGES = int(os.environ.get("BENCH_POLITE_IMAGES", 20_000))
DISTINCT = 500
HOSTS = {"127.0.0.41": 20, "127.0.0.42": 50, "127.0.0.43": 200, "127.0.0.44": None}
UNLIMITED_SHARE = 0.25
CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/gbifdl_bench"))
I2D_VENV = CACHE / "images" / "anchors" / "img2dataset"
RESULTS = Path(__file__).parent / "results" / "politeness.json"
REPO = Path(__file__).resolve().parents[2]
TARGETS = {"share_of_allowance": 0.90, "throttled_share": 0.02, "max_10s_rate_over_allowance": 1.0}

SERVER = textwrap.dedent(
    """
    import json, socket, sys, time, uvicorn
    from gbifdl_assets.sandbox import SandboxConfig, create_app
    from gbifdl_assets.sandbox.hosts import MediaHost
    hosts = json.loads(sys.argv[1])
    media_hosts = tuple(MediaHost(f"h{i}.bench.test", addr, share=1, rate=rate) for i, (addr, rate) in
                        enumerate(hosts.items()))
    app = create_app(SandboxConfig(occurrences=20_000, seed=42, media_fault_rate=0.0, media_hosts=media_hosts))
    LOG = []

    async def logged(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/bench/log":
            body = json.dumps(LOG).encode()
            LOG.clear()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] != "http" or not scope["path"].startswith("/media/"):
            await app(scope, receive, send)
            return
        address = scope["server"][0]

        async def send_logged(message):
            if message["type"] == "http.response.start":
                LOG.append((address, time.monotonic(), message["status"]))
            await send(message)

        await app(scope, receive, send_logged)

    def bind(addr, port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((addr, port))
        return s

    main = bind("127.0.0.1", 0)
    port = main.getsockname()[1]
    socks = [main] + [bind(addr, port) for addr in hosts]
    print(port, flush=True)
    config = uvicorn.Config(logged, log_level="warning", access_log=False, http="httptools", loop="uvloop",
                            timeout_keep_alive=75, backlog=2048, lifespan="on")
    uvicorn.Server(config).run(sockets=socks)
    """
)

OURS = textwrap.dedent(
    """
    import json, sys, time
    from gbifdl_assets.media.download import DownloadConfig, download_images
    from gbifdl_assets.media.fetch import FetchConfig
    from gbifdl_assets.storage import LocalStorage
    rows = [{"url": line.strip()} for line in open(sys.argv[1]) if line.strip()]
    started = time.monotonic()
    summary = download_images(rows, LocalStorage(sys.argv[2]), ledger="bench",
                              config=DownloadConfig(fetch=FetchConfig(allow_loopback=True)))
    print(json.dumps({"started": started, "ended": time.monotonic(), "ok": summary.ok,
                      "failed_by_reason": summary.failed_by_reason, "learned": summary.hosts,
                      "same_bytes": summary.same_bytes}))
    """
)

I2D = textwrap.dedent(
    """
    import json, os, sys, time
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    os.environ["WANDB_MODE"] = "disabled"
    def main():
        from img2dataset import download
        started = time.monotonic()
        download(url_list=sys.argv[1], input_format="txt", output_folder=sys.argv[2], output_format="files",
                 processes_count=2, thread_count=64, number_sample_per_shard=2500, enable_wandb=False,
                 timeout=10, retries=0, disable_all_reencoding=True, resize_mode="no")
        ended = time.monotonic()
        files = sum(1 for _, _, fs in os.walk(sys.argv[2]) for f in fs if f.endswith(".jpg"))
        print(json.dumps({"started": started, "ended": ended, "ok": files}))
    if __name__ == "__main__":
        main()
    """
)


def _i2d_python() -> tuple[Path | None, str | None]:
    """img2dataset's own virtualenv (bench_images.py's; created with pip when missing)."""
    python = I2D_VENV / "bin" / "python"
    if (I2D_VENV / ".installed").is_file():
        return python, None
    shutil.rmtree(I2D_VENV, ignore_errors=True)
    I2D_VENV.parent.mkdir(parents=True, exist_ok=True)
    for cmd in (
        [sys.executable, "-m", "venv", str(I2D_VENV)],
        [str(python), "-m", "pip", "install", "-q", "img2dataset==1.47.0"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            return None, f"{' '.join(cmd[-2:])} failed: {(proc.stdout + proc.stderr)[-500:]}"
    (I2D_VENV / ".installed").write_text("img2dataset==1.47.0")
    return python, None


def _urls(port: int) -> list[str]:
    """N URLs over the four hosts, shuffled (seeded); 500 distinct images made distinct with ?r=k."""
    from gbifdl_assets.sandbox import get_world
    from gbifdl_assets.sandbox.records import media_format
    from gbifdl_assets.sandbox.world import media_items

    world = get_world(42, 20_000, 1_500)
    paths: list[str] = []
    for i in range(len(world.occ)):
        key = int(world.occ.key[i])
        for item, mtype in enumerate(media_items(world.occ, i)):
            if mtype == 0 and media_format(world, key, item, mtype)[1] == "jpg" and len(paths) < DISTINCT:
                paths.append(f"/media/{key}/{item}.jpg")
        if len(paths) >= DISTINCT:
            break
    limited = {a: r for a, r in HOSTS.items() if r}
    total = sum(limited.values())
    counts = {a: int(N_IMAGES * (1 - UNLIMITED_SHARE) * r / total) for a, r in limited.items()}
    counts.update({a: N_IMAGES - sum(counts.values()) for a, r in HOSTS.items() if not r})
    urls = []
    j = 0
    for address, n in counts.items():
        for _ in range(n):
            urls.append(f"http://{address}:{port}{paths[j % DISTINCT]}?r={j // DISTINCT}")
            j += 1
    random.Random(17).shuffle(urls)
    return urls


def _log(port: int) -> list[tuple[str, float, int]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/log", timeout=60) as r:
        return [tuple(x) for x in json.load(r)]


def _metrics(log: list[tuple[str, float, int]], started: float, ended: float) -> dict:
    """What the hosts saw: per host and in all (see the module docstring)."""
    per_host = {}
    first = min(t for _, t, _ in log)
    served_limited = 0
    limited_end = first
    for address, allowance in HOSTS.items():
        times = sorted(t for a, t, _ in log if a == address)
        ok = sorted(t for a, t, s in log if a == address and s == 200)
        throttled = sum(1 for a, _, s in log if a == address and s == 429)
        span = (ok[-1] - times[0]) if ok else 0.0
        peak: float | None = None  # None: the host was not busy for a whole window after the first 10 s
        for start in range(int(first + 10), int(times[-1] - 9) if times else 0):
            n = bisect.bisect_left(times, start + 10) - bisect.bisect_left(times, start)
            peak = max(peak or 0.0, n / 10)
        row = {
            "allowance": allowance,
            "requests": len(times),
            "throttled": throttled,
            "served": len(ok),
            "busy_seconds": round(span, 2),
            "served_per_s": round(len(ok) / span, 1) if span else None,
            "max_10s_rate": None if peak is None else round(peak, 1),
        }
        if allowance:
            row["share_of_allowance"] = round(len(ok) / span / allowance, 3) if span else None
            row["max_10s_rate_over_allowance"] = None if peak is None else round(peak / allowance, 3)
            served_limited += len(ok)
            limited_end = max(limited_end, ok[-1] if ok else first)
        per_host[address] = row
    requests = len(log)
    throttled = sum(1 for _, _, s in log if s == 429)
    allowance = sum(r for r in HOSTS.values() if r)
    limited_seconds = limited_end - first
    return {
        "wall_seconds": round(ended - started, 2),
        "requests": requests,
        "throttled": throttled,
        "throttled_share": round(throttled / requests, 4) if requests else None,
        "limited_hosts_served_per_s": round(served_limited / limited_seconds, 1) if limited_seconds else None,
        "share_of_allowance": round(served_limited / limited_seconds / allowance, 3)
        if limited_seconds
        else None,
        "max_10s_rate_over_allowance": max(
            (
                h["max_10s_rate_over_allowance"]
                for h in per_host.values()
                if h["allowance"] and h["max_10s_rate_over_allowance"] is not None
            ),
            default=None,
        ),
        "hosts": per_host,
    }


def _run(name: str, cmd: list[str], port: int) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["images"] = N_IMAGES
    log = _log(port)
    if os.environ.get("BENCH_POLITE_LOG"):  # the raw server log, for a closer look
        Path(f"{os.environ['BENCH_POLITE_LOG']}.{name}.json").write_text(
            json.dumps({"started": result["started"], "log": log})
        )
    result.update(_metrics(log, result["started"], result["ended"]))
    result["images_not_fetched"] = N_IMAGES - result["ok"]
    return result


@pytest.mark.timeout(7200)  # a benchmark, not a test
def test_bench_politeness() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f"politeness-{os.getpid()}"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, json.dumps(HOSTS)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        port = int(server.stdout.readline().strip())
        urls = _urls(port)
        for path in sorted({u.split("?")[0].split(f":{port}")[1] for u in urls})[:DISTINCT]:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}?r=warm", timeout=30).read()  # render cache
        _log(port)  # start clean
        work.mkdir(parents=True, exist_ok=True)
        url_file = work / "urls.txt"
        url_file.write_text("\n".join(urls) + "\n")
        results: dict[str, dict] = {}
        results["ours"] = _run("ours", [sys.executable, "-c", OURS, str(url_file), str(work / "ours")], port)
        print_run("ours", results["ours"])
        i2d, why = _i2d_python()
        if i2d is None:
            print(f"img2dataset unavailable: {why}")
        else:
            time.sleep(2)  # the limiters' windows empty
            results["img2dataset"] = _run(
                "img2dataset", [str(i2d), "-c", I2D, str(url_file), str(work / "i2d")], port
            )
            print_run("img2dataset", results["img2dataset"])
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    ours = results["ours"]
    out = {
        "benchmark": "politeness",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "setup": {
            "images": N_IMAGES,
            "distinct_images": DISTINCT,
            "hosts": {a: r or "unlimited" for a, r in HOSTS.items()},
            "limiter": "at most N admitted requests in any 1-s sliding window; 429 + Retry-After: 1 beyond",
            "unlimited_share": UNLIMITED_SHARE,
            "server": "sandbox media hosts, uvicorn httptools+uvloop, own process, requests logged server-side",
            "command": f"BENCH_POLITE_IMAGES={N_IMAGES} python -m pytest -o python_files='bench_*.py' "
            "gbifdl_assets_tests/bench/bench_politeness.py -s",
        },
        "targets": TARGETS,
        "met": {
            "share_of_allowance": ours["share_of_allowance"] >= TARGETS["share_of_allowance"],
            "throttled_share": ours["throttled_share"] <= TARGETS["throttled_share"],
            "max_10s_rate_over_allowance": (ours["max_10s_rate_over_allowance"] or 0)
            <= TARGETS["max_10s_rate_over_allowance"],
        },
        "runs": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"results: {RESULTS}")
    assert ours["ok"] == N_IMAGES, ours.get("failed_by_reason")


def print_run(name: str, r: dict) -> None:
    print(
        f"{name:12s} {r['ok']:,} images in {r['wall_seconds']:.1f} s; limited hosts {r['limited_hosts_served_per_s']} "
        f"img/s = {r['share_of_allowance']:.0%} of the allowance; 429s {r['throttled_share']:.2%} of "
        f"{r['requests']:,} requests; max 10-s rate / allowance {r['max_10s_rate_over_allowance']}; "
        f"{r['images_not_fetched']:,} images not fetched"
    )
    for address, h in r["hosts"].items():
        print(f"    {address} allowance {h['allowance']}: {h['served']:,} served at {h['served_per_s']}/s, "
              f"{h['throttled']} x 429, max 10-s rate {h['max_10s_rate']}")  # fmt: skip
