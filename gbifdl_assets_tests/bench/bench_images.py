"""Benchmark: images from loopback media servers into the store, against img2dataset in the same run.

Two workloads (issue 22; the small one is issue 6's):

**Realistic photos** (the headline). ``BENCH_PHOTOS`` (2,000) downloads of ``BENCH_PHOTOS_DISTINCT``
(160) camera-like pictures made by :mod:`.photos` (0.3-12 MP JPEGs at quality 85-95, some
progressive, some 4:2:2/4:4:4, a quarter portrait of which half by EXIF orientation; ~5 % PNG;
cached under a versioned key), resized to 512 px on the long side and stored as JPEG q90.

* **Server**: the pictures held in memory by a bare ASGI app under uvicorn (httptools, uvloop,
  keep-alive, backlog 2048) in its own process, listening on 4 loopback addresses
  (127.0.0.1-127.0.0.4) so per-host limits see 4 hosts, as a real run sees several. Distinct URLs
  through ``?r=k`` query strings.
* **Ours**: :func:`gbifdl_assets.media.download.download_images` with its defaults (one downloader
  process per core for 2,000+ rows, validation, resize, EXIF orientation, atomic writes, ledger).
* **img2dataset 1.47.0** in its best configuration for this workload, picked in the same run by a
  sweep over ``BENCH_SWEEP_IMAGES`` (600) of the URLs: processes x threads, and ``resize_mode``
  ``keep_ratio_largest`` (our output) or ``border`` (padded to 512x512); always
  ``image_size=512, resize_only_if_bigger=True, encode_quality=90`` (ours), ``min_image_size=64``,
  ``skip_reencode=True``, ``output_format="files"``, 2 shards per process, its default
  ``downscale_interpolation="area"``. It decodes every image in full (OpenCV) and does not apply
  EXIF orientation (its output of the ~12 % rotated photos is sideways).
* ``BENCH_RUNS`` (3) rounds, the two tools alternating which goes first; each run is a fresh
  subprocess into a fresh folder; images/s = images / the subprocess's wall time (start-up
  included); CPU ms per image = user + system time of the subprocess and its workers / images (the
  server's CPU is not counted for anyone). Medians, and the ratios of the medians.
* **Peak RSS** (:mod:`.proctree`): the largest sampled sum of ``VmRSS`` over each run's process
  tree, never ``ru_maxrss`` (inherited from the pytest parent). The memory target is checked on
  ``BENCH_RSS_IMAGES`` (100,000; 0 skips) realistic photos through ``gbifdl images fetch`` (the CLI
  streaming a manifest Parquet).

**Small images** (``BENCH_SMALL=0`` skips): ``BENCH_IMAGES`` (10,000) ~12 KB 320x240 JPEGs from the
sandbox media app (500 distinct, ``?r=k``), never resized; ours vs img2dataset without decoding,
img2dataset decoding like ours (OpenCV, min side 64, kept as is), and gbif-dl 0.1.1 (64 workers, one
folder per class), 3 rounds.

The anchors live in their own virtualenvs under ``$BENCH_CACHE/anchors`` (created on first use with
pip; their pins clash with ours). Results: ``gbifdl_assets_tests/bench/results/images.json``. Run:
``make bench`` or ``.venv/bin/python -m pytest -o python_files='bench_*.py'
gbifdl_assets_tests/bench/bench_images.py -s``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gbifdl_assets_tests.bench.photos import MIX, cache_key, photo_set
from gbifdl_assets_tests.bench.proctree import run_measured

RUNS = int(os.environ.get("BENCH_RUNS", 3))
N_PHOTOS = int(os.environ.get("BENCH_PHOTOS", 2_000))
DISTINCT_PHOTOS = int(os.environ.get("BENCH_PHOTOS_DISTINCT", 160))
SWEEP_IMAGES = int(os.environ.get("BENCH_SWEEP_IMAGES", 600))
RSS_IMAGES = int(os.environ.get("BENCH_RSS_IMAGES", 100_000))
SMALL = os.environ.get("BENCH_SMALL", "1") != "0"
N_SMALL = int(os.environ.get("BENCH_IMAGES", 10_000))
DISTINCT_SMALL = 500
HOSTS = 4
CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/gbifdl_bench")) / "images"
ANCHORS = CACHE / "anchors"
RESULTS = Path(__file__).parent / "results" / "images.json"
REPO = Path(__file__).resolve().parents[2]
ANCHOR_SPECS = {"img2dataset": "img2dataset==1.47.0", "gbif_dl": "gbif-dl==0.1.1"}
TARGETS = {
    "photos_ratio_vs_img2dataset": 2.0,  # images/s
    "photos_cpu_share_of_img2dataset": 0.5,  # our CPU per image / theirs: at most half
    "peak_rss_mb_100k": 500,
    "small_ratio_vs_img2dataset": 1.5,
    "small_ratio_vs_gbif_dl": 2.0,
}
#: (processes, threads) x resize modes tried for img2dataset on the photos
SWEEP = [(1, 32), (2, 16), (2, 64), (4, 16), (4, 32)]
SWEEP_MODES = ["keep_ratio_largest", "border"]

PHOTO_SERVER = textwrap.dedent(
    """
    import json, socket, sys, uvicorn
    from pathlib import Path
    folder, hosts = Path(sys.argv[1]), int(sys.argv[2])
    files = {}
    for spec in json.loads((folder / "index.json").read_text()):
        data = (folder / spec["file"]).read_bytes()
        ctype = b"image/png" if spec["file"].endswith(".png") else b"image/jpeg"
        files["/p/" + spec["file"]] = (data, [(b"content-type", ctype), (b"content-length", b"%d" % len(data))])

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        hit = files.get(scope["path"])
        if hit is None:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": hit[1]})
        await send({"type": "http.response.body", "body": hit[0]})

    socks = []
    for i in range(hosts):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((f"127.0.0.{i + 1}", 0))
        socks.append(sock)
    print(json.dumps([f"http://127.0.0.{i + 1}:{s.getsockname()[1]}" for i, s in enumerate(socks)]), flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, http="httptools", loop="uvloop",
                            timeout_keep_alive=75, backlog=2048, lifespan="on")
    uvicorn.Server(config).run(sockets=socks)
    """
)

SMALL_SERVER = textwrap.dedent(
    """
    import json, socket, sys, uvicorn
    from gbifdl_assets.sandbox import SandboxConfig, create_app
    app = create_app(SandboxConfig(occurrences=20_000, seed=42, media_fault_rate=0.0))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    print(json.dumps([f"http://127.0.0.1:{sock.getsockname()[1]}"]), flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, http="httptools", loop="uvloop",
                            timeout_keep_alive=75, backlog=2048, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    """
)

_SELF_HWM = "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))) / 1024"

OURS = textwrap.dedent(
    f"""
    import json, sys, time
    t0 = time.perf_counter()
    from gbifdl_assets.media.download import DownloadConfig, download_images
    from gbifdl_assets.media.fetch import FetchConfig
    from gbifdl_assets.storage import LocalStorage
    rows = [json.loads(line) for line in open(sys.argv[1])]
    t1 = time.perf_counter()
    summary = download_images(rows, LocalStorage(sys.argv[2]), ledger="bench",
                              # same_bytes off: the ?r=k copies are distinct downloads for both
                              # sides (img2dataset stores every URL), not one stored object
                              config=DownloadConfig(fetch=FetchConfig(allow_loopback=True),
                                                    same_bytes=False))
    t2 = time.perf_counter()
    print(json.dumps({{"files": summary.ok, "failed": summary.failed, "inner_seconds": t2 - t1,
                      "startup_seconds": t1 - t0, "self_hwm_mb": {_SELF_HWM}}}))
    """
)

I2D = textwrap.dedent(
    f"""
    import json, os, sys, time
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    os.environ["WANDB_MODE"] = "disabled"
    def main():
        t0 = time.perf_counter()
        from img2dataset import download
        t1 = time.perf_counter()
        download(url_list=sys.argv[1], input_format="txt", output_folder=sys.argv[3], output_format="files",
                 enable_wandb=False, retries=0, **json.loads(sys.argv[2]))
        t2 = time.perf_counter()
        files = sum(1 for _, _, fs in os.walk(sys.argv[3]) for f in fs if f.endswith(".jpg"))
        print(json.dumps({{"files": files, "inner_seconds": t2 - t1, "startup_seconds": t1 - t0,
                          "self_hwm_mb": {_SELF_HWM}}}))
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
    if marker.is_file() and marker.read_text().strip() == ANCHOR_SPECS[name]:
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


def _start(script: str, *args: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("["):
        proc.kill()
        raise RuntimeError("the media server did not start")
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _photo_urls(bases: list[str], specs: list[dict], n: int, salt: str = "") -> list[str]:
    """``n`` distinct URLs over the pictures, each picture always on the same host."""
    d = len(specs)
    return [f"{bases[(j % d) % len(bases)]}/p/{specs[j % d]['file']}?r={salt}{j // d}" for j in range(n)]


def _small_items(base: str, n: int, distinct: int) -> list[dict]:
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


def _write_lists(name: str, items: list[dict]) -> tuple[Path, Path]:
    jsonl, txt = CACHE / f"{name}.jsonl", CACHE / f"{name}.txt"
    jsonl.write_text("".join(json.dumps(it) + "\n" for it in items))
    txt.write_text("".join(it["url"] + "\n" for it in items))
    return jsonl, txt


def _run(cmd: list[str], out: Path, n: int) -> dict:
    os.sync()  # nobody pays for the previous run's writeback
    result = run_measured([*cmd, str(out)], cwd=REPO)
    assert result["files"] == n, (cmd[:3], result)
    result["images_per_s"] = round(n / result["wall_seconds"], 1)
    result["cpu_ms_per_image"] = round(result["cpu_seconds"] * 1000 / n, 2)
    shutil.rmtree(out, ignore_errors=True)
    return result


def _line(label: str, r: dict) -> str:
    return (
        f"{label:34s} {r['images_per_s']:8.1f} img/s  {r['cpu_ms_per_image']:7.2f} CPU-ms/img  "
        f"wall {r['wall_seconds']:6.2f} s  tree RSS {r['peak_tree_rss_mb']:5.0f} MB"
    )


def _i2d_options(n: int, processes: int, threads: int, mode: str) -> dict:
    return {
        "processes_count": processes,
        "thread_count": threads,
        "number_sample_per_shard": max(1, -(-n // (2 * processes))),
        "image_size": 512,
        "resize_mode": mode,
        "resize_only_if_bigger": True,
        "encode_quality": 90,
        "encode_format": "jpg",
        "skip_reencode": True,
        "min_image_size": 64,
        "timeout": 30,
    }


def _medians(runs: dict[str, list[dict]], key: str) -> dict[str, float]:
    return {name: round(statistics.median(r[key] for r in rs), 2) for name, rs in runs.items()}


def _photos(i2d: Path | None, outs: Path) -> dict:
    started = time.perf_counter()
    folder, specs = photo_set(CACHE, DISTINCT_PHOTOS)
    print(f"\n{len(specs)} photos in {folder} ({time.perf_counter() - started:.0f} s to generate or find)")
    server, bases = _start(PHOTO_SERVER, str(folder), str(HOSTS))
    try:
        urls = _photo_urls(bases, specs, N_PHOTOS)
        jsonl, txt = _write_lists("photos", [{"url": u} for u in urls])
        sweep, best = [], None
        if i2d is not None and SWEEP_IMAGES:
            _, sweep_txt = _write_lists(
                "photos_sweep", [{"url": u} for u in _photo_urls(bases, specs, SWEEP_IMAGES, "s")]
            )
            configs = [(p, t, SWEEP_MODES[0]) for p, t in SWEEP]
            for p, t, mode in configs:
                opts = _i2d_options(SWEEP_IMAGES, p, t, mode)
                r = _run(
                    [str(i2d), "-c", I2D, str(sweep_txt), json.dumps(opts)],
                    outs / f"sweep-{p}-{t}-{mode}",
                    SWEEP_IMAGES,
                )
                sweep.append({"processes": p, "threads": t, "resize_mode": mode, **r})
                print(_line(f"sweep img2dataset p{p} t{t} {mode}", r))
            top = max(sweep, key=lambda r: r["images_per_s"])
            for mode in SWEEP_MODES[1:]:
                opts = _i2d_options(SWEEP_IMAGES, top["processes"], top["threads"], mode)
                r = _run(
                    [str(i2d), "-c", I2D, str(sweep_txt), json.dumps(opts)],
                    outs / f"sweep-{mode}",
                    SWEEP_IMAGES,
                )
                sweep.append(
                    {"processes": top["processes"], "threads": top["threads"], "resize_mode": mode, **r}
                )
                print(_line(f"sweep img2dataset p{top['processes']} t{top['threads']} {mode}", r))
            best = max(sweep, key=lambda r: r["images_per_s"])
        elif i2d is not None:
            best = {"processes": 2, "threads": 64, "resize_mode": SWEEP_MODES[0]}
        commands = {"ours": [sys.executable, "-c", OURS, str(jsonl)]}
        if best is not None:
            opts = _i2d_options(N_PHOTOS, best["processes"], best["threads"], best["resize_mode"])
            commands["img2dataset"] = [str(i2d), "-c", I2D, str(txt), json.dumps(opts)]
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for round_ in range(RUNS):
            order = list(commands) if round_ % 2 == 0 else list(reversed(commands))
            for name in order:
                r = _run(commands[name], outs / f"photos-{name}-{round_}", N_PHOTOS)
                runs[name].append(r)
                print(_line(f"round {round_ + 1} {name}", r))
        rss = _photos_rss(bases, specs) if RSS_IMAGES else None
    finally:
        _stop(server)
    med, cpu = _medians(runs, "images_per_s"), _medians(runs, "cpu_ms_per_image")
    result = {
        "setup": {
            "images": N_PHOTOS,
            "distinct_images": len(specs),
            "generator": cache_key(),
            "mix": [{"format": f, "width": w, "height": h, "weight": wt} for f, w, h, wt in MIX],
            "mean_megapixels": round(sum(s["width"] * s["height"] for s in specs) / len(specs) / 1e6, 2),
            "mean_kb": round(sum(s["bytes"] for s in specs) / len(specs) / 1e3, 1),
            "png_share": round(sum(s["format"] == "png" for s in specs) / len(specs), 3),
            "output": "JPEG q90, longer side 512 (kept as is: never; every photo is larger)",
            "server": f"in-memory ASGI app, uvicorn httptools+uvloop, keep-alive, {HOSTS} loopback hosts",
            "runs": RUNS,
        },
        "img2dataset_sweep": [
            {
                k: r[k]
                for k in (
                    "processes",
                    "threads",
                    "resize_mode",
                    "images_per_s",
                    "cpu_ms_per_image",
                    "peak_tree_rss_mb",
                )
            }
            for r in sweep
        ],  # fmt: skip
        "img2dataset_config": None
        if best is None
        else {k: best[k] for k in ("processes", "threads", "resize_mode")},
        "median_images_per_s": med,
        "median_cpu_ms_per_image": cpu,
        "peak_tree_rss_mb": {name: max(r["peak_tree_rss_mb"] for r in rs) for name, rs in runs.items()},
        "runs": runs,
        "rss_run": rss,
    }
    if "img2dataset" in med:
        result["ratio_images_per_s"] = round(med["ours"] / med["img2dataset"], 2)
        result["cpu_share_of_img2dataset"] = round(cpu["ours"] / cpu["img2dataset"], 3)
        result["paired_ratios"] = [
            round(a["images_per_s"] / b["images_per_s"], 2)
            for a, b in zip(runs["ours"], runs["img2dataset"], strict=True)
        ]
    return result


def _photos_rss(bases: list[str], specs: list[dict]) -> dict:
    """``RSS_IMAGES`` photos through the CLI: peak memory of the whole process tree."""
    urls = _photo_urls(bases, specs, RSS_IMAGES, "m")
    manifest = CACHE / "photos_rss.parquet"
    keys = [hashlib.sha256(u.encode()).hexdigest() for u in urls]
    pq.write_table(pa.table({"content_key": keys, "url": urls}), manifest)
    store = CACHE / "store_rss"
    shutil.rmtree(store, ignore_errors=True)
    os.sync()
    cmd = [sys.executable, "-m", "gbifdl_assets.media.cli", "fetch", str(manifest), "--store", str(store),
           "--allow-loopback", "--progress-seconds", "1000"]  # fmt: skip
    rss = run_measured(cmd, cwd=REPO)
    shutil.rmtree(store, ignore_errors=True)
    assert rss["ok"] == RSS_IMAGES, rss
    rss.update(
        images=RSS_IMAGES,
        images_per_s=round(RSS_IMAGES / rss["wall_seconds"], 1),
        cpu_ms_per_image=round(rss["cpu_seconds"] * 1000 / RSS_IMAGES, 2),
    )
    print(
        f"{RSS_IMAGES:,} photos through `gbifdl images fetch`: {rss['images_per_s']} img/s, "
        f"{rss['cpu_ms_per_image']} CPU-ms/img, peak tree RSS {rss['peak_tree_rss_mb']} MB "
        f"(largest process {rss['peak_process_rss_mb']} MB, {rss['processes_seen']} processes)"
    )
    return rss


def _small(anchors: dict[str, Path], outs: Path) -> dict:
    server, (base,) = _start(SMALL_SERVER)
    try:
        items = _small_items(base, N_SMALL, DISTINCT_SMALL)
        import requests

        with requests.Session() as s:  # render each distinct image once (the server caches 512)
            for it in items[:DISTINCT_SMALL]:
                s.get(it["url"].split("?")[0] + "?r=warm", timeout=30).raise_for_status()
        jsonl, txt = _write_lists("small", items)
        raw = {"disable_all_reencoding": True, "resize_mode": "no"}
        validating = {"resize_mode": "keep_ratio_largest", "image_size": 512, "resize_only_if_bigger": True,
                      "skip_reencode": True, "encode_format": "jpg", "min_image_size": 64}  # fmt: skip
        common = {"processes_count": 2, "thread_count": 64, "number_sample_per_shard": 2500, "timeout": 10}
        commands = {"ours": [sys.executable, "-c", OURS, str(jsonl)]}
        if "img2dataset" in anchors:
            i2d = str(anchors["img2dataset"])
            commands["img2dataset"] = [i2d, "-c", I2D, str(txt), json.dumps({**common, **raw})]
            commands["img2dataset_validating"] = [
                i2d,
                "-c",
                I2D,
                str(txt),
                json.dumps({**common, **validating}),
            ]
        if "gbif_dl" in anchors:
            commands["gbif_dl"] = [str(anchors["gbif_dl"]), "-c", GBIF_DL, str(jsonl)]
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for round_ in range(RUNS):
            for name, cmd in commands.items():
                r = _run(cmd, outs / f"small-{name}-{round_}", N_SMALL)
                runs[name].append(r)
                print(_line(f"small round {round_ + 1} {name}", r))
    finally:
        _stop(server)
    med, cpu = _medians(runs, "images_per_s"), _medians(runs, "cpu_ms_per_image")
    return {
        "setup": {
            "images": N_SMALL,
            "distinct_images": DISTINCT_SMALL,
            "runs": RUNS,
            "server": "sandbox media app, uvicorn httptools+uvloop, keep-alive, own process",
        },  # fmt: skip
        "median_images_per_s": med,
        "median_cpu_ms_per_image": cpu,
        "ratios": {f"ratio_vs_{name}": round(med["ours"] / med[name], 2) for name in med if name != "ours"},
        "peak_tree_rss_mb": {name: max(r["peak_tree_rss_mb"] for r in rs) for name, rs in runs.items()},
        "runs": runs,
    }


@pytest.mark.timeout(7200)  # a benchmark, not a test: on a loaded machine it takes long
def test_bench_images() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    anchors: dict[str, Path] = {}
    unavailable: dict[str, str] = {}
    for name in ANCHOR_SPECS if SMALL else ["img2dataset"]:
        python, why = _anchor_python(name)
        if python is None:
            unavailable[name] = why or "unknown"
            print(f"anchor {name} unavailable: {why}")
        else:
            anchors[name] = python
    # Every run writes into a folder of its own, deleted right after it: deleting thousands of files
    # just before a run would make ext4 scan the freed inodes on each creation in the next one.
    outs = CACHE / f"out-{os.getpid()}"
    try:
        photos = _photos(anchors.get("img2dataset"), outs)
        small = _small(anchors, outs) if SMALL else None
    finally:
        shutil.rmtree(outs, ignore_errors=True)
    rss = photos["rss_run"]
    results = {
        "benchmark": "images",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "anchors": ANCHOR_SPECS,
        "targets": TARGETS,
        "photos": photos,
        "peak_rss_mb_100k": rss["peak_tree_rss_mb"] if rss and rss["images"] >= 100_000 else None,
        "small": small,
        "unavailable_anchors": unavailable,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(
        "\nphotos, median images/s: "
        + ", ".join(f"{k} {v:,.1f}" for k, v in photos["median_images_per_s"].items())
    )
    print("photos, median CPU ms per image: " + ", ".join(f"{k} {v:.2f}" for k, v in photos["median_cpu_ms_per_image"].items()))  # fmt: skip
    if "ratio_images_per_s" in photos:
        print(
            f"photos: {photos['ratio_images_per_s']:.2f}x img2dataset's best ({photos['img2dataset_config']}) "
            f"in images/s (target {TARGETS['photos_ratio_vs_img2dataset']}); CPU per image "
            f"{photos['cpu_share_of_img2dataset']:.2f} of its (target <= {TARGETS['photos_cpu_share_of_img2dataset']})"
        )
    if rss:
        print(
            f"peak tree RSS, {rss['images']:,} photos: {rss['peak_tree_rss_mb']} MB (target < {TARGETS['peak_rss_mb_100k']})"
        )
    if small:
        print(
            "small, median images/s: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in small["median_images_per_s"].items())
        )
        for key, value in small["ratios"].items():
            print(f"small {key}: {value:.2f}")
    print(f"results: {RESULTS}")
