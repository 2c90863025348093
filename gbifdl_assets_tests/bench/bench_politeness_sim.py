"""Benchmark: the per-host controller against simulated hosts whose refusals come at random.

The network benchmark (``bench_politeness.py``) has hosts with real limits and no background; real
hosts also refuse a few requests whatever the rate (one object's hot-link guard, a back end busy now
and then; 0.4 % of the sandbox's media URLs answer 503 once). This runs ``HostControl`` against the
simulated hosts of ``unit/test_media_hosts.py`` in simulated time (no network, ~2 min of one core):

* hosts without a limit (latency 10, 30 and 100 ms, answers slowing as more are in flight), with
  ``BENCH_SIM_FLAKY`` (0.4 % by default) of URLs refusing once at random: the throughput over the last
  10 simulated seconds as a share of the same host without refusals;
* a host allowing 200 requests in any second with the same background: its served rate as a share of
  the allowance;

six seeds each, 300 simulated seconds. Results in ``results/politeness_sim.json``. Both kinds of host
matter: the rule that counted 1 % of a second's answers as throttling kept a fast host without a limit
at 8-15 % of its throughput here, and a rule that learns the background must not learn a real
limit's refusals as background (``bench_politeness.py`` keeps the hosts with real limits honest).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from gbifdl_assets_tests.unit.test_media_hosts import simulate

RESULTS = Path(__file__).parent / "results" / "politeness_sim.json"
FLAKY = float(os.environ.get("BENCH_SIM_FLAKY", "0.004"))
SEEDS = range(6)
SECONDS = 300


def test_bench_politeness_simulated() -> None:
    out: dict = {"flaky_share": FLAKY, "seeds": len(SEEDS), "simulated_seconds": SECONDS, "cases": {}}
    for latency in (0.01, 0.03, 0.1):
        clean = simulate(math.inf, SECONDS, latency, slowdown=1 / 8)["last_10s"]
        shares = [
            simulate(math.inf, SECONDS, latency, flaky=FLAKY, slowdown=1 / 8, seed=seed)["last_10s"] / clean
            for seed in SEEDS
        ]
        out["cases"][f"no limit, latency {latency * 1000:g} ms"] = _summary(shares, clean_rate=clean)
    runs = [simulate(200, SECONDS, 0.03, flaky=FLAKY, seed=seed) for seed in SEEDS]
    case = _summary([r["share"] for r in runs])
    case["refused_max"] = round(max(r["refused"] for r in runs), 4)
    out["cases"]["allowing 200 req/s, latency 30 ms"] = case
    for name, c in out["cases"].items():
        print(
            f"{name:36s} share of the host's best: {c['min']:.2f}-{c['max']:.2f} (median {c['median']:.2f})"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    assert all(c["min"] > 0 for c in out["cases"].values())


def _summary(shares: list[float], **extra: float) -> dict:
    ordered = sorted(shares)
    return {
        "min": round(ordered[0], 3),
        "median": round(ordered[len(ordered) // 2], 3),
        "max": round(ordered[-1], 3),
        **{k: round(v, 1) for k, v in extra.items()},
    }
