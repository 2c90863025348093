"""Per-host adaptive politeness (media/hosts.py), the host rates file and the per-host scheduler.

The controller is pure arithmetic on a clock passed in, so it is checked here against simulated
hosts (a per-second limiter answering 429 + Retry-After beyond its allowance) in simulated time:
no network, no sleeping, and bounds generous enough for any machine.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import json
import math
import random
from collections import deque

import pytest

from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.host_rates import HostBook, load_host_rates, merge_worker_states, save_host_rates
from gbifdl_assets.media.hosts import (
    FAIL,
    NEUTRAL,
    OK,
    OVERLOAD,
    THROTTLE,
    HostControl,
    HostGate,
    HostLimits,
    host_key_of,
    host_limit_for,
    normalize_host_limits,
)
from gbifdl_assets.media.schedule import HostScheduler
from gbifdl_assets.media.settings import apply_image_options, merge_host_limits
from gbifdl_assets.specs import ImageOptions
from gbifdl_assets.storage import LocalStorage


def simulate(
    allowance: float,
    seconds: float = 120.0,
    latency: float = 0.002,
    retry_after: float = 1.0,
    learned=None,
    *,
    bad_every: int = 0,
    flaky: float = 0.0,
    slowdown: float = 0.0,
    jitter: float = 0.0,
    seed: int = 7,
):
    """A host allowing ``allowance`` requests in any 1-s window, hammered by one controller.

    ``bad_every``: every such URL answers 429 for ever (retried a second later); ``flaky``: this share
    of URLs, drawn at random, answer 503 once (the sandbox's flaky media); ``slowdown``: each
    request in flight adds this share of ``latency`` to an answer's time, as when the downloader's
    own CPU is the limit; ``jitter``: answer times vary by this log-normal sigma (a real network)."""
    control = HostControl("h", HostLimits(), learned)
    window: deque[float] = deque()
    events: list = []
    retries: list = []
    flaky_urls: set[int] = set()  # the URLs that answered 503 once
    draw = random.Random(seed)
    seq = in_flight = refused = 0
    sends: list[float] = []

    def serve(t: float) -> bool:
        while window and window[0] <= t - 1.0:
            window.popleft()
        if len(window) < allowance:
            window.append(t)
            return True
        return False

    def fill(now: float) -> None:
        nonlocal in_flight, seq
        while in_flight < control.limit:
            full = in_flight + 1 >= control.limit
            t, paced = control.schedule(now)
            in_flight += 1
            seq += 1
            url = heapq.heappop(retries)[1] if retries and retries[0][0] <= now else seq
            heapq.heappush(events, (t, seq, "send", (full, paced, url)))

    fill(0.0)
    while events:
        t, _, kind, data = heapq.heappop(events)
        if t > seconds:
            break
        if kind == "send":
            sends.append(t)
            seq += 1
            after = latency * (1 + slowdown * in_flight)
            if jitter:
                after *= draw.lognormvariate(0.0, jitter)
            url = data[2]
            bad = bool(bad_every) and url % bad_every == 0
            once = url not in flaky_urls and draw.random() < flaky
            if once:
                flaky_urls.add(url)
            ok = not bad and not once and serve(t + after / 2)
            heapq.heappush(events, (t + after, seq, "answer", (t, ok, after, bad or once, *data)))
            continue
        sent, ok, after, retry, full, paced, url = data
        in_flight -= 1
        if ok:
            control.on_answer(t, sent, OK, latency=after, window_full=full, paced=paced, target=f"/{url}")
        else:
            refused += 1
            control.on_answer(
                t, sent, THROTTLE, retry_after=retry_after, window_full=full, paced=paced, target=f"/{url}"
            )
            if retry:
                heapq.heappush(retries, (t + 1.0, url))
        fill(t)
    served = len(sends) - refused
    peak = max(
        (bisect.bisect_left(sends, s + 10) - bisect.bisect_left(sends, s)) / 10
        for s in range(10, int(seconds) - 9)
    )
    return {
        "share": served / seconds / allowance,
        "refused": refused / len(sends),
        "peak": peak / allowance,
        "last_10s": sum(1 for s in sends if s > seconds - 10) / 10,
        "control": control,
    }


@pytest.mark.parametrize("allowance", [5, 20, 50, 200, 1000])
def test_a_throttling_host_is_paced_near_its_allowance(allowance: int) -> None:
    result = simulate(allowance)
    assert result["share"] >= 0.85, result  # at least 85 % of what the host allows
    assert result["refused"] <= 0.05, result  # few 429s
    assert result["peak"] <= 1.02, result  # never above the allowance over 10 s (after the first 10 s)
    control = result["control"]
    assert control.ceiling is not None and 0.8 * allowance <= control.ceiling <= 1.2 * allowance


def test_learned_rate_starts_the_next_run_near_the_allowance() -> None:
    fresh = simulate(20, seconds=30)
    learned = simulate(20, seconds=30, learned=fresh["control"].state())
    assert learned["refused"] < fresh["refused"] or learned["refused"] <= 0.01
    assert learned["control"].decreases <= fresh["control"].decreases


def test_a_429_slows_the_host_to_what_it_bore_instead_of_pausing_ever_longer() -> None:
    control = HostControl("h", HostLimits())
    now = 100.0
    for i in range(20):  # unpaced, 10 clean answers a second
        control.on_answer(now + i * 0.1, now + i * 0.1, OK, latency=0.005)
    now += 2.0
    pauses = []
    for _ in range(5):  # throttled again and again (two refusals in a row), each time after the pause
        control.on_answer(now, now, THROTTLE, retry_after=1.0)
        control.on_answer(now + 0.05, now + 0.05, THROTTLE, retry_after=1.0)
        pauses.append(round(control.pause_until - (now + 0.05), 6))
        now = control.pause_until + 0.6
    assert pauses == [1.0] * 5  # Retry-After honoured as given, never doubled
    assert control.rate is not None and control.rate >= HostLimits().min_rate


def test_retry_after_of_a_year_skips_the_host_and_one_in_the_past_does_not_pause() -> None:
    control = HostControl("slow.example.org", HostLimits(retry_after_cap=60))
    control.on_answer(10.0, 10.0, THROTTLE, retry_after=0.0)
    assert control.pause_until <= 10.0 and control.skipped is None
    control.on_answer(11.0, 11.0, THROTTLE, retry_after=365 * 86400.0, reason="http_429")
    assert control.skipped is not None
    assert "slow.example.org skipped for the rest of the run" in str(control.skipped)
    assert "31,536,000 s (Retry-After)" in str(control.skipped) and control.skipped.cause == "http_429"


def test_a_host_that_keeps_failing_is_skipped_and_a_clean_answer_resets_the_count() -> None:
    control = HostControl("dead.example.org", HostLimits(skip_after=5))
    for i in range(4):
        control.on_answer(float(i), float(i), FAIL, reason="connection_error")
    control.on_answer(5.0, 5.0, OK, latency=0.01)
    for i in range(4):
        control.on_answer(6.0 + i, 6.0 + i, FAIL, reason="connection_error")
    assert control.skipped is None
    control.on_answer(11.0, 11.0, FAIL, reason="dns_error")
    assert control.skipped is not None and control.skipped.cause == "dns_error"
    assert "5 failures in a row" in str(control.skipped)


def test_one_url_answering_429_among_many_clean_answers_leaves_the_host_alone() -> None:
    control = HostControl("h", HostLimits())
    for i in range(300):
        control.on_answer(i * 0.005, i * 0.005, OK, latency=0.002)
    control.on_answer(1.5, 1.49, THROTTLE, retry_after=1.0)
    assert control.rate is None and control.pause_until == 0.0  # one URL's problem, not the host's
    control.on_answer(1.5, 1.5, OVERLOAD)  # a timeout among hundreds of answers: the same
    assert control.rate is None


def test_a_slow_host_with_one_url_that_always_answers_429_keeps_its_pace() -> None:
    """At 5 answers a second one URL refused again and again (the sandbox's planted 429s; some real
    hosts do it for one object) is that URL's; two URLs refused within a second are the host."""
    control = HostControl("h", HostLimits())
    now = 0.0
    for _retry in range(4):
        for _ in range(5):
            now += 0.2
            control.on_answer(now, now, OK, latency=0.01, target="/good.jpg")
        control.on_answer(now + 0.1, now, THROTTLE, retry_after=1.0, target="/bad.jpg")
    # the host's first refusal pauses it for its Retry-After (a quiet host asking to wait); no cut
    assert control.decreases == 0 and control.rate is None and control.pause_until == pytest.approx(2.1)
    assert control.throttled == 4
    now += 1.0
    control.on_answer(now, now, THROTTLE, retry_after=1.0, target="/other.jpg")
    control.on_answer(now + 0.1, now, THROTTLE, retry_after=1.0, target="/third.jpg")
    assert control.decreases == 1 and control.pause_until == pytest.approx(now + 1.1)


def test_a_guessed_ceiling_stays_a_guess_in_the_next_run(tmp_path) -> None:
    control = HostControl("h", HostLimits())
    control.on_answer(1.0, 1.0, OK, latency=0.01)
    control.rate, control.ceiling, control.ceiling_soft = 2.0, 2.0, True
    save_host_rates(storage := LocalStorage(tmp_path), {"h": control.state()})
    state = load_host_rates(storage)["h"]
    assert state["ceiling_soft"] is True
    again = HostControl("h", HostLimits(), state)
    assert again.ceiling == 2.0 and again.ceiling_soft
    measured = HostControl("h", HostLimits(), {**state, "ceiling_soft": False})
    assert not measured.ceiling_soft
    # probed at the guess's pace: past 1.3 x the guess (and forgotten) within ~10 s of clean answers
    now = 10.0
    while now < 25.0 and again.ceiling is not None:
        now += 0.05
        again.on_answer(now, now, OK, latency=0.01, paced=True)
    assert again.ceiling is None, (now, again.rate)


def test_window_grows_while_answers_are_clean_and_shrinks_on_timeouts() -> None:
    control = HostControl("h", HostLimits(max_concurrency=16, start_concurrency=2))
    assert control.limit == 2
    for i in range(40):
        control.on_answer(i * 0.01, i * 0.01, OK, latency=0.01, window_full=True)
    assert control.limit == 16
    control.on_answer(1.0, 0.99, OVERLOAD)  # the only refusal in a second of answers: host-wide? no
    for _ in range(5):
        control.on_answer(1.1, 1.05, OVERLOAD)
    assert control.cwnd < 16


def test_crawl_delay_caps_the_rate() -> None:
    control = HostControl("h", HostLimits())
    control.cap_rate(0.5)
    assert control.rate == 0.5
    t1, _ = control.schedule(0.0)
    t2, paced = control.schedule(0.0)
    assert (t1, t2, paced) == (0.0, 2.0, True)


def test_host_limits_table() -> None:
    table = normalize_host_limits(
        {"static.inaturalist.org": 20, ".example.org": {"max_rate": 5, "max_concurrency": 2}}
    )
    assert host_limit_for("static.inaturalist.org", table) == (20.0, None)
    assert host_limit_for("a.b.example.org:8080", table) == (5.0, 2)
    assert host_limit_for("example.org", table) == (5.0, 2)
    assert host_limit_for("other.org", table) == (None, None)
    assert normalize_host_limits(["a.org=3"]) == (("a.org", 3.0, None),)
    with pytest.raises(ValueError, match="write HOST=REQUESTS_PER_SECOND"):
        normalize_host_limits(["a.org"])
    with pytest.raises(ValueError, match="must be > 0"):
        normalize_host_limits({"a.org": 0})
    cfg = FetchConfig(per_host=8, max_rate=50, host_limits={"a.org": 100, "b.org": 10})
    assert cfg.limits_for("a.org").max_rate == 50 and cfg.limits_for("b.org").max_rate == 10
    assert cfg.limits_for("c.org").max_concurrency == 8
    with pytest.raises(ValueError, match="invalid fetch configuration"):
        FetchConfig(host_limits={"a.org": "fast"})


def test_spec_image_options_apply_to_the_download_config() -> None:
    from gbifdl_assets.media.download import DownloadConfig

    options = ImageOptions(max_rate_per_host=10, host_limits={"a.org": 2}, robots_txt=False)
    config = apply_image_options(
        DownloadConfig(fetch=FetchConfig(max_rate=30, host_limits={"a.org": 5})), options
    )
    assert config.fetch.max_rate == 10 and config.fetch.host_limits == (("a.org", 2.0, None),)
    assert config.fetch.robots_txt is False and config.fetch.opt_out_headers is True
    assert merge_host_limits({"a": 1}, {"a": 3, "b": 2}) == (("a", 1.0, None), ("b", 2.0, None))
    with pytest.raises(ValueError, match="host limit"):
        ImageOptions(host_limits={"a.org": -1})


def test_host_key_of_matches_the_fetchers_key() -> None:
    assert host_key_of("http://Static.Example.org:8080/a.jpg") == "static.example.org:8080"
    assert host_key_of("https://example.org/a.jpg") == "example.org"
    assert host_key_of("not a url") == ""


def test_host_rates_file_round_trip_merge_and_bad_files(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "s")
    assert load_host_rates(storage) == {}
    save_host_rates(storage, {"a.org": {"rate": 5.0, "ceiling": 6.0, "requests": 10}})
    save_host_rates(storage, {"b.org": {"rate": None, "requests": 3}})
    rates = load_host_rates(storage)
    assert set(rates) == {"a.org", "b.org"} and rates["a.org"]["ceiling"] == 6.0
    assert rates["a.org"]["updated_at"].endswith("Z")
    storage.write_bytes("hosts/rates.json", b"<html>not json")
    assert load_host_rates(storage) == {}  # a hint only: never an error
    storage.write_bytes("hosts/rates.json", json.dumps({"hosts": []}).encode())
    assert load_host_rates(storage) == {}
    merged = merge_worker_states(
        [{"a": {"rate": 5.0, "requests": 2}}, {"a": {"rate": 4.0, "requests": 3, "skipped": "x"}}]
    )
    assert merged["a"]["rate"] == 9.0 and merged["a"]["requests"] == 5 and merged["a"]["skipped"] == "x"
    book = HostBook(storage, "other/key.json", save_seconds=0)
    book.update(0, {"c.org": {"rate": 1.0, "requests": 1, "throttled": 1, "skipped": "host c.org skipped"}})
    book.save()
    assert set(load_host_rates(storage, "other/key.json")) == {"c.org"}
    assert (
        book.summary()["hosts_skipped"] == {"c.org": "host c.org skipped"}
        and book.summary()["throttled"] == 1
    )


def test_scheduler_keeps_fast_hosts_busy_while_a_slow_host_paces() -> None:
    """A slow host (window 1) gets one worker at a time; the others keep the fast host going."""

    async def main() -> dict[str, int]:
        slow = HostGate(HostControl("slow", HostLimits(max_concurrency=1, start_concurrency=1)))
        fast = HostGate(HostControl("fast", HostLimits(max_concurrency=8, start_concurrency=8)))
        gates = {"slow": slow, "fast": fast}
        sched = HostScheduler(gates.__getitem__, max_pending=1000)
        for i in range(40):  # the manifest alternates hosts
            sched.put_nowait(("slow", i), "slow")
            sched.put_nowait(("fast", i), "fast")
        sched.close()
        busy = {"slow": 0, "fast": 0}
        peak = {"slow": 0, "fast": 0}
        done = {"slow": 0, "fast": 0}
        finished_fast_at = []

        async def worker() -> None:
            while (item := await sched.get()) is not None:
                (host, _), key = item
                busy[host] += 1
                peak[host] = max(peak[host], busy[host])
                await asyncio.sleep(0.02 if host == "slow" else 0.001)
                busy[host] -= 1
                done[host] += 1
                if host == "fast" and done["fast"] == 40:
                    finished_fast_at.append(done["slow"])
                sched.done(key)

        await asyncio.gather(*[worker() for _ in range(8)])
        return {
            "peak_slow": peak["slow"],
            "peak_fast": peak["fast"],
            "slow_done_when_fast_finished": finished_fast_at[0],
        }

    result = asyncio.run(main())
    assert result["peak_slow"] == 1  # never more than the slow host's window
    assert result["peak_fast"] >= 4
    assert result["slow_done_when_fast_finished"] < 20  # the fast host did not wait for the slow one


def test_jobs_waiting_to_retry_leave_their_place_in_the_hosts_window_to_others() -> None:
    """A host with a window of 4 where three jobs wait out a Retry-After: the other jobs go on four
    at a time, not one (a job is out while its image is validated and stored: the politeness bench's
    200 requests/s host served a third of that while refused URLs waited); the requests in flight
    never exceed the window."""

    async def main() -> tuple[int, int, float]:
        gate = HostGate(HostControl("h", HostLimits(max_concurrency=4, start_concurrency=4)))
        sched = HostScheduler({"h": gate}.__getitem__, max_pending=1000)
        for i in range(40):
            sched.put_nowait(i, "h")
        sched.close()
        handed = peak_flight = 0
        started = asyncio.get_running_loop().time()
        finished = []

        async def worker() -> None:
            nonlocal handed, peak_flight
            while (item := await sched.get()) is not None:
                job, host = item
                handed += 1
                token, _ = await gate.acquire()
                peak_flight = max(peak_flight, gate.in_flight)
                await asyncio.sleep(0.001)
                gate.release(token, NEUTRAL)
                await asyncio.sleep(0.02)  # validating and storing the image: the job is still out
                if job < 3:  # refused: waits a second before its retry, as Fetcher.fetch does
                    async with gate.rest():
                        await asyncio.sleep(1.0)
                finished.append(asyncio.get_running_loop().time() - started)
                sched.done(host)

        await asyncio.gather(*[worker() for _ in range(16)])
        return handed, peak_flight, sorted(finished)[-4]

    handed, peak_flight, fourth_last = asyncio.run(main())
    assert handed == 40 and peak_flight <= 4
    # the 37 jobs that were not refused were done long before the refused ones' second was over
    # (with resting jobs holding the window, the host would stall until they came back)
    assert fourth_last < 0.5, fourth_last


def test_hosts_learned_by_a_concurrent_shard_reach_this_run_for_hosts_it_has_not_met(tmp_path) -> None:
    from gbifdl_assets.media.fetch import Fetcher

    storage = LocalStorage(tmp_path)
    book = HostBook(storage, "hosts/rates.json", save_seconds=0.0)
    book.load()
    fetcher = Fetcher(FetchConfig(), host_states=book.learned)
    book.update(0, {"mine.org": {"rate": 3.0, "ceiling": 3.0}})
    # another shard of the same training set writes what it learned meanwhile
    save_host_rates(
        storage,
        {"slow.org": {"rate": 4.0, "ceiling": 5.0}, "mine.org": {"rate": 50.0, "ceiling": 60.0}},
        "hosts/rates.json",
    )
    book.maybe_save()
    assert book.learned["slow.org"]["ceiling"] == 5.0
    assert "mine.org" not in book.learned  # under way here: its own controller goes on
    control = fetcher.host("slow.org").control  # met after the other shard wrote: starts from it
    assert control.ceiling == 5.0 and control.rate == 4.0
    assert load_host_rates(storage, "hosts/rates.json")["mine.org"]["rate"] == 3.0  # ours was saved


@pytest.mark.parametrize("latency", [0.03, 0.1])
def test_a_few_urls_refusing_for_ever_do_not_slow_a_host_down_for_good(latency: float) -> None:
    """0.4 % of URLs answering 429 for ever (the sandbox's planted ones; real hosts' hot-link guards)
    once took a host without a limit from 54 to 18 requests/s: each first refusal cut the rate by
    15 % for good. The cut is undone when the URL's retry is refused again and nothing else was."""

    def requests_per_s(bad_every: int) -> float:
        return simulate(math.inf, 60, latency, bad_every=bad_every, slowdown=1 / 8)["last_10s"]

    clean, with_bad_urls = requests_per_s(0), requests_per_s(225)
    assert with_bad_urls >= 0.9 * clean, (with_bad_urls, clean)


@pytest.mark.parametrize("latency", [0.01, 0.03, 0.1])
def test_refusals_at_random_whatever_the_rate_do_not_set_a_ceiling(latency: float) -> None:
    """A host without a limit where a share of URLs answer 503 once, at random (the sandbox's flaky
    media; a busy back end now and then). Two such refusals in one second once counted as the host
    throttling: the rate was cut and the next chance pair "confirmed" a ceiling at the cut rate (a
    shard of the 100,000-image load run held 44 requests/s with the CPU idle; under that rule this
    simulation fell from 534, 178 and 54 to 51, 60 and 30 requests/s). 0.4 % of URLs, as on the sandbox."""
    clean = simulate(math.inf, 300, latency, slowdown=1 / 8)["last_10s"]
    for seed in range(2):
        result = simulate(math.inf, 300, latency, flaky=0.004, slowdown=1 / 8, seed=seed)
        assert result["last_10s"] >= 0.85 * clean, (seed, result["last_10s"], clean)


@pytest.mark.parametrize("allowance", [20, 200])
def test_a_limited_host_refusing_some_urls_at_random_is_still_paced_near_its_allowance(
    allowance: int,
) -> None:
    for seed in range(3):
        result = simulate(allowance, 300, 0.03, flaky=0.004, seed=seed)
        assert result["share"] >= 0.85, result
        assert result["refused"] <= 0.02, result  # the 0.4 % at random, and few 429s of the limit
        assert result["peak"] <= 1.05, result
        control = result["control"]
        assert control.ceiling is not None and 0.8 * allowance <= control.ceiling <= 1.2 * allowance


def test_the_background_share_leaves_out_clean_answers_and_refusals_alike() -> None:
    """Answers to requests sent just before a cut (the overload seen late) teach nothing about the
    host's background, clean or refused: counting only the clean ones made the share too low, and a
    host refusing 2 % at random was then cut again and again."""
    control = HostControl("h", HostLimits())
    now = 100.0
    for i in range(300):  # 300 clean answers a second, unpaced
        control.on_answer(now + i / 300, now + i / 300, OK, latency=0.01)
    now += 1.0
    for i in range(8):  # a burst of throttling: the host is cut
        control.on_answer(now + i * 0.001, now + i * 0.001, THROTTLE, target=f"/b{i}")
    assert control.decreases == 1
    learned = (control.background_answers, control.background_refusals)
    late = now + 0.01
    for i in range(50):  # answers to requests sent before the cut took effect
        control.on_answer(late + i * 0.001, now, OK, latency=0.01)
    assert (control.background_answers, control.background_refusals) == learned
    later = now + 1.0  # sent once the cut holds: learned again
    control.on_answer(later, later, OK, latency=0.01)
    # one more answer, less at most a second's decay (time constant 300 s)
    assert 0.99 * learned[0] + 1 <= control.background_answers <= learned[0] + 1


@pytest.mark.parametrize("share", [0.02])
def test_a_host_refusing_a_few_percent_at_random_keeps_most_of_its_throughput(share: float) -> None:
    """2 % of URLs refusing once, on a host without a limit: the median of six seeds keeps more than
    half of the clean throughput (0.48 when the share was learned from every clean answer but not
    from every refusal; 0.62 since)."""
    clean = simulate(math.inf, 120, 0.01, slowdown=1 / 8)["last_10s"]
    kept = sorted(
        simulate(math.inf, 120, 0.01, flaky=share, slowdown=1 / 8, seed=seed)["last_10s"] / clean
        for seed in range(6)
    )
    assert kept[3] > 0.55, kept


def test_a_hosts_background_is_carried_to_the_next_run_and_saved_with_its_rate(tmp_path) -> None:
    """The share a host refuses whatever the rate is kept in the rates file: a run starting from it
    does not take the host's known background for a limit in its first seconds. An earlier run's
    evidence weighs at most 2,000 answers (the host may have changed), its share unchanged."""
    clean = simulate(math.inf, 60, 0.01, slowdown=1 / 8)["last_10s"]
    kept = []
    for seed in range(6):
        first = simulate(math.inf, 120, 0.01, flaky=0.02, slowdown=1 / 8, seed=seed)["control"].state()
        assert first["background_answers"] > 2000 and first["background_refusals"] > 0
        carried = {k: first[k] for k in ("background_answers", "background_refusals", "latency_ms")}
        control = HostControl("h", HostLimits(), carried)
        assert control.background_answers == pytest.approx(2000.0)
        share = first["background_refusals"] / first["background_answers"]
        assert control.background_refusals / control.background_answers == pytest.approx(share, rel=1e-3)
        second = simulate(math.inf, 60, 0.01, flaky=0.02, slowdown=1 / 8, seed=seed + 100, learned=carried)
        kept.append(second["last_10s"] / clean)
    # a fresh start kept 0.19-0.99 of the clean throughput (median 0.54) on the same seeds
    assert sorted(kept)[2] >= 0.9, kept
    storage = LocalStorage(tmp_path)
    save_host_rates(storage, {"a.org": first})
    saved = load_host_rates(storage)["a.org"]
    assert saved["background_answers"] == first["background_answers"]
    merged = merge_worker_states(
        [
            {"a": {"rate": 5.0, "background_answers": 100.0, "background_refusals": 1.0}},
            {"a": {"rate": 4.0, "background_answers": 300.0, "background_refusals": 2.5}},
        ]
    )
    assert merged["a"]["background_answers"] == 400.0 and merged["a"]["background_refusals"] == 3.5
