"""Benchmark: 10,000 ~12 KB JPEGs from one local keep-alive media server onto local disk.

Targets (issue 6): with validation on, >= 1.5x img2dataset 1.47 and >= 2x gbif-dl 0.1.1 in
images/s, measured in the same run against the same server and URL list; peak RSS under 500 MB
for 100,000 images.

* **Server**: the sandbox media server (``create_app(SandboxConfig(media_fault_rate=0))``) in its
  own process, served by uvicorn with its httptools parser and uvloop (the sandbox's own
  ``start_sandbox`` uses h11, which costs ~310 µs of server CPU per image against ~190 µs: on
  2 cores the server shares the CPU with the downloader, and the faster server leaves more of it to
  the tools being compared). Keep-alive on, TCP_NODELAY, backlog 2048.
* **URLs**: 500 distinct media URLs (the server caches its last 512 renders, so it never re-renders
  during a run) made into 10,000 distinct URLs with ``?r=k`` query strings; ~16 KB JPEGs of
  320x240. Served once before the runs to warm the cache.
* **Ours**: :func:`gbifdl_assets.media.download.download_images` with its defaults (one downloader
  process per core, so 2 here; 64 requests in flight and 16 per host in all; validation on: every
  image fully decoded by Pillow, sha256, kept as is since it is already a JPEG under ``max_side``;
  atomic writes into the content-addressed store; ledger segments made durable with syncfs).
* **img2dataset 1.47.0**: ``output_format="files"``, 2 processes x 64 threads, 2,500 per shard, in
  two configurations: ``img2dataset`` with ``disable_all_reencoding=True`` (no decode at all: its
  fastest, the ratio target's anchor) and ``img2dataset_validating`` doing what ours does (every image
  decoded by OpenCV, minimum side 64, kept as is when it is a JPEG within 512 px:
  ``resize_mode="keep_ratio_largest", image_size=512, resize_only_if_bigger=True, skip_reencode=True``).
* **gbif-dl 0.1.1**: ``gbif_dl.stores.dl_async.download`` over MediaData dicts labelled with the
  species (one folder per class; a single flat folder makes its per-item glob O(n): ~130 img/s),
  ``nb_workers=64, tcp_connections=64`` (its best setting in the anchors reference). No
  validation (it has none by default).
* Each tool runs in a fresh subprocess into a fresh folder; images/s = 10,000 / the subprocess's
  wall time (imports and start-up included for everyone). The three tools take turns, 3 rounds;
  medians. Output file counts are checked.
* The anchors live in their own virtualenvs under ``$BENCH_CACHE/anchors`` (created on first use
  with pip; their pins clash with ours), never in the project's environment.
* **Peak RSS**: ``gbifdl images fetch`` (the CLI, streaming the manifest Parquet) over 100,000
  distinct URLs (``?r=0..199``): the largest sum of the resident memory of the CLI process and its
  worker processes, sampled every 0.1 s (and ``ru_maxrss`` of the largest single process).

Results: gbifdl_assets_tests/bench/results/images.json. Run: ``make bench`` or
``.venv/bin/python -m pytest -o python_files='bench_*.py' gbifdl_assets_tests/bench/bench_images.py -s``.
``BENCH_RUNS`` (3), ``BENCH_IMAGES`` (10,000) and ``BENCH_RSS_IMAGES`` (100,000; 0 skips) override.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

RUNS = int(os.environ.get("BENCH_RUNS", 3))
N_IMAGES = int(os.environ.get("BENCH_IMAGES", 10_000))
RSS_IMAGES = int(os.environ.get("BENCH_RSS_IMAGES", 100_000))
DISTINCT = 500
CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/gbifdl_bench")) / "images"
ANCHORS = CACHE / "anchors"
RESULTS = Path(__file__).parent / "results" / "images.json"
REPO = Path(__file__).resolve().parents[2]
ANCHOR_SPECS = {"img2dataset": "img2dataset==1.47.0", "gbif_dl": "gbif-dl==0.1.1"}
TARGETS = {"ratio_vs_img2dataset": 1.5, "ratio_vs_gbif_dl": 2.0, "peak_rss_mb_100k": 500}

SERVER = textwrap.dedent(
    """
    import socket, sys, uvicorn
    from gbifdl_assets.sandbox import SandboxConfig, create_app
    app = create_app(SandboxConfig(occurrences=20_000, seed=42, media_fault_rate=0.0))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, http="httptools", loop="uvloop",
                            timeout_keep_alive=75, backlog=2048, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    """
)

OURS = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    from gbifdl_assets.media.download import DownloadConfig, download_images
    from gbifdl_assets.media.fetch import FetchConfig
    from gbifdl_assets.storage import LocalStorage
    rows = [json.loads(line) for line in open(sys.argv[1])]
    t1 = time.perf_counter()
    summary = download_images(rows, LocalStorage(sys.argv[2]), ledger="bench",
                              config=DownloadConfig(fetch=FetchConfig(allow_loopback=True)))
    t2 = time.perf_counter()
    print(json.dumps({"files": summary.ok, "failed": summary.failed, "inner_seconds": t2 - t1,
                      "startup_seconds": t1 - t0}))
    """
)

I2D = textwrap.dedent(
    """
    import json, os, sys, time
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    os.environ["WANDB_MODE"] = "disabled"
    def main():
        t0 = time.perf_counter()
        from img2dataset import download
        t1 = time.perf_counter()
        if sys.argv[2] == "validating":  # decode every image (cv2), check its size, keep the JPEG bytes
            mode = dict(resize_mode="keep_ratio_largest", image_size=512, resize_only_if_bigger=True,
                        skip_reencode=True, encode_format="jpg", min_image_size=64)
        else:  # raw bytes: no decode at all
            mode = dict(disable_all_reencoding=True, resize_mode="no")
        download(url_list=sys.argv[1], input_format="txt", output_folder=sys.argv[3], output_format="files",
                 processes_count=2, thread_count=64, number_sample_per_shard=2500,
                 enable_wandb=False, timeout=10, retries=0, **mode)
        t2 = time.perf_counter()
        out = sys.argv[3]
        files = sum(1 for _, _, fs in os.walk(out) for f in fs if f.endswith(".jpg"))
        print(json.dumps({"files": files, "inner_seconds": t2 - t1, "startup_seconds": t1 - t0}))
    if __name__ == "__main__":
        main()
    """
)

GBIF_DL = textwrap.dedent(
    """
    import json, os, sys, time
    t0 = time.perf_counter()
    from gbif_dl.stores.dl_async import download
    items = [json.loads(line) for line in open(sys.argv[1])]
    t1 = time.perf_counter()
    stats = download(items, root=sys.argv[2], nb_workers=64, tcp_connections=64, loglevel="CRITICAL")
    t2 = time.perf_counter()
    files = sum(1 for _, _, fs in os.walk(sys.argv[2]) for f in fs if f.endswith(".jpg"))
    print(json.dumps({"files": files, "stats": stats, "inner_seconds": t2 - t1, "startup_seconds": t1 - t0}))
    """
)


def _anchor_python(name: str) -> tuple[Path | None, str | None]:
    """The anchor's own virtualenv (created on first use), or (None, why it is unavailable)."""
    venv = ANCHORS / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.is_file():
        return python, None
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", ANCHOR_SPECS[name]],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            return None, f"{' '.join(cmd[-2:])} failed (exit {proc.returncode}): {tail}"
    marker.write_text(ANCHOR_SPECS[name])
    return python, None


def _start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError("the media server did not start")
    return proc, url


def _media_items(base: str, n: int, distinct: int) -> list[dict]:
    from gbifdl_assets.sandbox import get_world
    from gbifdl_assets.sandbox.media import image_keys
    from gbifdl_assets.sandbox.records import media_format
    from gbifdl_assets.sandbox.world import media_items

    world = get_world(42, 20_000, 1_500)
    picked: list[tuple[str, int]] = []
    for i in range(len(world.occ)):
        key = int(world.occ.key[i])
        for item, mtype in enumerate(media_items(world.occ, i)):
            if mtype == 0 and media_format(world, key, item, mtype)[1] == "jpg" and len(picked) < distinct:
                picked.append((f"{base}/media/{key}/{item}.jpg", image_keys(world, i)[0]))
        if len(picked) >= distinct:
            break
    return [
        {"url": f"{picked[j % distinct][0]}?r={j // distinct}", "label": str(picked[j % distinct][1])}
        for j in range(n)
    ]


def _warm(items: list[dict]) -> None:
    import requests

    with requests.Session() as s:
        for it in items[:DISTINCT]:
            s.get(it["url"].split("?")[0] + "?r=warm", timeout=30).raise_for_status()


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, summed (MB)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


def _timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run a benchmark subprocess: wall time, CPU time, and peak RSS of the process tree.

    ``peak_rss_mb`` is the largest single process (``ru_maxrss``); ``peak_tree_rss_mb`` the largest
    sum over the process and its children (worker processes), sampled every 0.1 s.
    """
    before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(
        wall_seconds=round(wall, 3),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 3),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
        peak_tree_rss_mb=round(peak[0], 1),
        load_before=[round(x, 2) for x in before],
    )
    return result


@pytest.mark.timeout(3600)  # a benchmark, not a test: on a loaded machine it takes long
def test_bench_images() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    anchors: dict[str, Path] = {}
    unavailable: dict[str, str] = {}
    for name in ANCHOR_SPECS:
        python, why = _anchor_python(name)
        if python is None:
            unavailable[name] = why or "unknown"
            print(f"anchor {name} unavailable: {why}")
        else:
            anchors[name] = python

    server, base = _start_server()
    try:
        items = _media_items(base, N_IMAGES, DISTINCT)
        _warm(items)
        jsonl = CACHE / "items.jsonl"
        jsonl.write_text("".join(json.dumps(it) + "\n" for it in items))
        txt = CACHE / "urls.txt"
        txt.write_text("".join(it["url"] + "\n" for it in items))
        # Every run writes into a folder of its own, and all are deleted at the end: deleting 10,000
        # files right before a run makes ext4 scan the just-freed inodes on every file creation
        # ("recently deleted" check), which penalised whichever tool ran next by ~0.5 ms per file.
        outs = CACHE / f"out-{os.getpid()}"
        commands = {"ours": [sys.executable, "-c", OURS, str(jsonl)]}
        if "img2dataset" in anchors:
            commands["img2dataset"] = [str(anchors["img2dataset"]), "-c", I2D, str(txt), "raw"]
            commands["img2dataset_validating"] = [
                str(anchors["img2dataset"]),
                "-c",
                I2D,
                str(txt),
                "validating",
            ]
        if "gbif_dl" in anchors:
            commands["gbif_dl"] = [str(anchors["gbif_dl"]), "-c", GBIF_DL, str(jsonl)]
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for round_ in range(RUNS):
            for name, cmd in commands.items():
                os.sync()  # nobody pays for the previous run's writeback
                result = _timed([*cmd, str(outs / f"{name}-{round_}")])
                assert result["files"] == N_IMAGES, (name, result)
                result["images_per_s"] = round(N_IMAGES / result["wall_seconds"], 1)
                runs[name].append(result)
                print(f"round {round_ + 1} {name:12s} {result['images_per_s']:8.1f} img/s "
                      f"(wall {result['wall_seconds']:.2f} s, cpu {result['cpu_seconds']:.1f} s, "
                      f"rss {result['peak_tree_rss_mb']:.0f} MB)")  # fmt: skip
        shutil.rmtree(outs, ignore_errors=True)

        rss = None
        if RSS_IMAGES:
            rss_items = _media_items(base, RSS_IMAGES, DISTINCT)
            urls = [it["url"] for it in rss_items]
            manifest = CACHE / "m100k.parquet"
            import hashlib

            pq.write_table(
                pa.table(
                    {"content_key": [hashlib.sha256(u.encode()).hexdigest() for u in urls], "url": urls}
                ),
                manifest,
            )
            store = CACHE / "store100k"
            shutil.rmtree(store, ignore_errors=True)
            os.sync()
            cmd = [sys.executable, "-m", "gbifdl_assets.media.cli", "fetch", str(manifest), "--store", str(store),
                   "--allow-loopback", "--progress-seconds", "1000"]  # fmt: skip
            rss = _timed(cmd)
            rss["images"] = RSS_IMAGES
            assert rss["ok"] == RSS_IMAGES, rss
            shutil.rmtree(store, ignore_errors=True)
            print(
                f"100k run: {rss['images_per_s']} img/s, peak RSS {rss['peak_tree_rss_mb']} MB "
                f"(all processes; largest single process {rss['peak_rss_mb']} MB)"
            )
    finally:
        server.terminate()
        server.wait(10)

    med = {name: statistics.median(r["images_per_s"] for r in rs) for name, rs in runs.items()}
    # CPU per image (the tool's process tree, not the server's) is steadier than images/s on a
    # shared machine: other processes stretch the wall time, much less the CPU time
    cpu_ms = {
        name: round(statistics.median(r["cpu_seconds"] for r in rs) * 1000 / N_IMAGES, 3)
        for name, rs in runs.items()
    }
    ratios = {f"ratio_vs_{name}": round(med["ours"] / med[name], 2) for name in med if name != "ours"}
    results = {
        "benchmark": "images",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "setup": {
            "images": N_IMAGES,
            "distinct_images": DISTINCT,
            "server": "sandbox media app, uvicorn httptools+uvloop, keep-alive, own process",
            "runs": RUNS,
            "anchors": ANCHOR_SPECS,
        },
        "targets": TARGETS,
        "median_images_per_s": med,
        "ratios": ratios,
        "median_cpu_ms_per_image": cpu_ms,
        "peak_rss_mb_100k": rss["peak_tree_rss_mb"] if rss else None,
        "rss_run": rss,
        "unavailable_anchors": unavailable,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print("\nmedian images/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in med.items()))
    print("median CPU ms per image: " + ", ".join(f"{k} {v:.3f}" for k, v in cpu_ms.items()))
    for key, value in ratios.items():
        print(f"{key}: {value:.2f} (target {TARGETS.get(key, '-')})")
    if rss:
        print(
            f"peak RSS for {RSS_IMAGES:,} images: {rss['peak_tree_rss_mb']} MB in all processes "
            f"(target < {TARGETS['peak_rss_mb_100k']}; largest single process {rss['peak_rss_mb']} MB)"
        )
    print(f"results: {RESULTS}")
