"""Per-host politeness that adapts: a request rate and a concurrency for every host, learned as we go.

Real GBIF media sit on hundreds of hosts, each with its own limits (iNaturalist's S3, museum servers,
Flickr), and a run is decided by how well it treats each of them. A fixed number of connections per
host either hammers a small server or crawls on a big one, and pausing a host for ever longer after
each 429 (what this downloader did before) lets a host that allows 20 requests/s see 3. So each host
gets a :class:`HostControl`, an AIMD controller in the spirit of TCP's congestion control:

* **Start polite**: ``start_concurrency`` requests in flight (2, like a careful browser), no rate
  limit of our own unless one is configured (``max_rate``, per host ``host_limits``) or was learned by
  an earlier run. While answers are fast and clean, the window grows by one per answer that found it
  full (doubling per round trip, "slow start") up to ``max_concurrency`` (``per_host``).
* **A 429 sets the rate the host can bear** instead of pausing it ever longer: the answers the host
  served in the last second (its allowance, for the usual token-bucket and per-second limiters) or
  the rate we were pacing at, whichever is lower, becomes the host's *ceiling*, and requests are
  paced (evenly spaced, never bursts) at ``decrease`` x that. A 503, a timeout and a 429 all count,
  but only once per overload: answers to requests sent before the last decrease are the same
  overload seen late, not a new one.
* **A host's background is not its limit**: refusals count only when that many, in a second or
  since the last decrease, are improbable at the share the host refuses whatever our rate (learned
  over the last minutes: a few URLs that always refuse, a back end busy now and then), and a URL
  refused again while the host answers others is that URL's.
* **Additive increase near the ceiling**: while answers are clean and the pacer is what holds
  requests back, the rate moves back quickly to 95 % of the ceiling, then creeps up by 1 % of it per
  second, so the host is probed gently rather than overrun; once the rate passes 1.3 x the ceiling
  without trouble, the ceiling is forgotten (the host had been busy, or shared) and the rate grows
  fast again.
* **Latency watched**: a host whose answers take more than twice (+50 ms) its usual time is
  queueing our requests; the window and the rate stop growing until it recovers, and the window
  is cut by half on timeouts.
* **Retry-After honoured, but capped**: the host is paused until then (every worker); a Retry-After
  above ``retry_after_cap`` (a year, say) means "not today": the host is skipped for the rest of
  the run instead of holding workers.
* **Hosts that keep failing are skipped**: after ``skip_after`` consecutive failures (refused
  connections, DNS errors, timeouts, 5xx, throttling) without one clean answer, its remaining images
  fail at once with reason ``host_skipped`` and an error naming the cause; a re-run tries again.

Concurrency for a paced host is kept near what its rate needs (rate x latency x 2 + 1), so a host
allowing 20 requests/s ties up one or two workers, not all of them.

The learned state of each host (:meth:`HostControl.state`) is kept in storage by the download run
(:mod:`.host_rates`) and used as the starting point of the next run and of the other shards.
:class:`HostGate` is the asyncio side (waiting for a slot and for the pacer); :class:`HostControl`
is pure arithmetic on a clock passed in, so it is tested and tuned without a network.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gbifdl_assets.host_limits import host_limit_for, normalize_host_limits

__all__ = [
    "HostControl",
    "HostGate",
    "HostLimits",
    "HostSkipped",
    "NEUTRAL",
    "OK",
    "OVERLOAD",
    "THROTTLE",
    "FAIL",
    "Signal",
    "host_key_of",
    "host_limit_for",
    "normalize_host_limits",
]

#: what an answer tells the controller: a clean answer, throttling (429/503), an overload without an
#: answer (timeout), or a failure that says nothing about load (refused connection, DNS, other 5xx)
Signal = str
OK, THROTTLE, OVERLOAD, FAIL = "ok", "throttle", "overload", "fail"
#: a request that ended without telling anything about the host (cancelled, refused by our guard)
NEUTRAL = "neutral"

_WINDOW = 1.0  # seconds over which refusals are weighed against answers
_HORIZON = 10.0  # seconds of sending and answer times kept (the bearable rate of slow hosts)
_NEAR, _TARGET = 0.95, 0.97  # below _NEAR x ceiling the rate moves quickly to _TARGET x ceiling
_PROBE = 0.003  # above it, the rate grows by this share of the ceiling per second
_PROBE_SOFT = 0.03  # … of a ceiling guessed from too few answers
_HOLD_FIRST, _HOLD_MAX = 30.0, 600.0  # seconds below a confirmed ceiling before probing again
_EVIDENCE = 10  # answers in the last second needed before they define a host's ceiling
_FIRST_RATE = 4.0  # requests/s at least, for a host that throttles before we know its rate
_PACED_WINDOW = 4  # requests in flight a paced host may always have (its pacer sets the rate)
_HOLD = 0.5  # seconds after a decrease during which more throttling counts as the same overload
# Refusals that come at random whatever the rate (a host's background: one URL's hot-link guard, a
# busy back end now and then) are told from a limit by how improbable their number is given the
# share the host refuses in the background, learned over the last minutes (see _host_wide).
_BACKGROUND_SPAN = 300.0  # seconds: the time constant of the learned background share
_PRIOR_ANSWERS, _PRIOR_SHARE = 1000.0, 2e-3  # what is assumed before a host has answered
_IMPROBABLE = 1e-3  # refusals this improbable under the background share are the host throttling
_BACKGROUND_CARRIED = 2000.0  # answers' worth of background evidence a run takes from an earlier one
_REFUSALS_KEPT = 512  # refusals remembered for the test (more within 10 s is throttling anyway)
_PLENTY = 25  # clean answers within _WINDOW below which a lone 429's Retry-After pauses the host
_REFUSED_TARGETS = 1024  # URLs whose refusals are remembered (to tell one bad URL from the host)


class HostSkipped(Exception):
    """The host was skipped for the rest of the run; ``str()`` says why."""

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause  # the ledger reason that made us give up (dns_error, http_429, …)


@dataclass(frozen=True)
class HostLimits:
    """Politeness settings of one host (see the module docstring)."""

    max_concurrency: int = 16
    start_concurrency: int = 2
    min_rate: float = 0.2
    max_rate: float | None = None
    #: multiplicative decrease on throttling: the new rate is this share of the rate the host bore
    decrease: float = 0.85
    #: consecutive failures (no clean answer in between) after which the host is skipped; 0: never
    skip_after: int = 20
    retry_after_cap: float = 60.0


def host_key_of(url: str) -> str:
    """The politeness key of a URL's host: lower-cased ``host[:port]`` ("" when there is none).

    The same key :func:`.ssrf.check_url` gives, computed without any check (for dealing jobs).
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return ""
    return f"{host}:{port}" if port and host else host


class HostControl:
    """The adaptive rate and window of one host (pure logic; times are ``time.monotonic()`` values)."""

    def __init__(self, host: str, limits: HostLimits, learned: Mapping[str, Any] | None = None) -> None:
        self.host = host
        self.limits = limits
        self.max_concurrency = max(1, limits.max_concurrency)
        self.cwnd = float(min(self.max_concurrency, max(1, limits.start_concurrency)))
        self.slow_start = True
        self.cap: float | None = limits.max_rate  # the configured ceiling, or a robots.txt Crawl-delay
        self.rate: float | None = limits.max_rate
        self.ceiling: float | None = None
        self.ceiling_soft = False  # guessed from too few answers (probed faster)
        self.confirmed = 0  # throttlings in a row at the same ceiling
        self.probe_after = 0.0  # no probing above the target before then (a confirmed ceiling)
        self.next_slot = 0.0
        self.pause_until = 0.0
        self.pause_from = 0.0
        self.decreased_at = -math.inf
        self.grown_at = 0.0
        self.latency: float | None = None  # EWMA of answer times
        self.base_latency: float | None = None  # the usual answer time (a slowly rising minimum)
        self.served: deque[float] = deque()  # times of clean answers within the last _HORIZON
        self.sent: deque[float] = deque()  # sending times within the last _HORIZON
        # times of the throttling answers and timeouts within the last _HORIZON, and their URLs
        self.refused: deque[float] = deque()
        self.refused_urls: deque[str | None] = deque()
        # answers and background refusals, decayed over _BACKGROUND_SPAN (see _host_wide)
        self.background_answers = self.background_refusals = 0.0
        self.background_at: float | None = None  # when the counts were last aged (None: not yet)
        self.refused_targets: dict[str, float] = {}  # URL -> when it was last refused (bounded)
        # the latest cuts: the URLs whose refusals made each (not yet refused again) and the state before
        self.cuts: deque[tuple[set[str], tuple[float | None, float | None, bool]]] = deque(maxlen=64)
        self.paced_at = -math.inf  # when the pacer last held a request back
        self.failures = 0  # consecutive, reset by a clean answer
        self.last_failure = ""
        self.skipped: HostSkipped | None = None
        # counters for logs, the run summary and the rates file
        self.requests = 0
        self.answered = 0
        self.throttled = 0
        self.timeouts = 0
        self.failed = 0
        self.decreases = 0
        if learned:
            self._adopt(learned)

    # ------------------------------------------------------------------------------ state
    def _adopt(self, learned: Mapping[str, Any]) -> None:
        """Start from what an earlier run learned (see :meth:`state`)."""
        self.adopt(learned)

    def adopt(self, learned: Mapping[str, Any], *, soft: bool = False) -> None:
        """Go on from a state learned elsewhere: an earlier run, or (``soft``) the sum of what several
        processes learned while they shared the host, which this one now paces alone."""
        rate = learned.get("rate")
        ceiling = learned.get("ceiling")
        if isinstance(rate, (int, float)) and rate > 0:
            self.rate = self._clamp(float(rate))
            self.slow_start = False
        if isinstance(ceiling, (int, float)) and ceiling > 0:
            self.ceiling = float(ceiling)
            self.ceiling_soft = soft or bool(learned.get("ceiling_soft"))
            self.slow_start = False
        if soft:  # what this process saw of the host was only its share: measure it afresh
            self.served.clear()
            self.sent.clear()
            self.decreased_at = time.monotonic()
        answers, refusals = learned.get("background_answers"), learned.get("background_refusals")
        if isinstance(answers, (int, float)) and isinstance(refusals, (int, float)) and answers > 0:
            # What the host refused whatever the rate, so that a run does not take a host's known
            # background for a limit in its first seconds. From an earlier run it weighs at most
            # _BACKGROUND_CARRIED answers (the host may have changed); from the other processes of
            # this run (soft), it is the sum of what they saw, this one's share included.
            keep = 1.0 if soft else min(1.0, _BACKGROUND_CARRIED / answers)
            self.background_answers = answers * keep
            self.background_refusals = min(max(0.0, refusals), answers) * keep
        conc = learned.get("concurrency")
        if isinstance(conc, (int, float)) and conc >= 1:
            self.cwnd = float(min(self.max_concurrency, max(self.cwnd, int(conc))))
        lat = learned.get("latency_ms")
        if isinstance(lat, (int, float)) and lat > 0:
            self.latency = self.base_latency = lat / 1000.0

    def state(self) -> dict[str, Any]:
        """What the next run starts from, and what a person reading the rates file wants to see."""
        return {
            "rate": None if self.rate is None else round(self.rate, 3),
            "ceiling": None if self.ceiling is None else round(self.ceiling, 3),
            # a ceiling guessed from too few answers, or measured once and not confirmed, stays a
            # guess in the next run and in the other shards (probed 10x faster than a confirmed one)
            "ceiling_soft": self.ceiling_soft,
            "concurrency": int(self.cwnd),
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 1),
            # the host's background (refusals whatever the rate) over the last minutes, decayed
            "background_answers": round(self.background_answers, 1),
            "background_refusals": round(self.background_refusals, 2),
            "requests": self.requests,
            "throttled": self.throttled,
            "timeouts": self.timeouts,
            "failed": self.failed,
            "skipped": str(self.skipped) if self.skipped else None,
        }

    def _clamp(self, rate: float) -> float:
        rate = max(self.limits.min_rate, rate)
        if self.cap is not None:
            rate = min(rate, self.cap)
        return rate

    def cap_rate(self, rate: float) -> None:
        """Never go faster than ``rate`` requests/s (a robots.txt ``Crawl-delay`` of 1/rate s)."""
        rate = max(self.limits.min_rate, rate)
        self.cap = rate if self.cap is None else min(self.cap, rate)
        self.rate = self.cap if self.rate is None else min(self.rate, self.cap)

    # ---------------------------------------------------------------------------- sending
    @property
    def limit(self) -> int:
        """Requests this host may have in flight now."""
        n = int(self.cwnd)
        if self.rate is not None and self.latency is not None:
            # a paced host needs rate x latency requests in flight; twice that, plus one, absorbs
            # jitter, and a few more keep one hanging request from stopping the host
            n = min(n, max(_PACED_WINDOW, int(self.rate * self.latency * 2) + 1))
        return max(1, min(n, self.max_concurrency))

    def schedule(self, now: float) -> tuple[float, bool]:
        """Reserve the next sending time: (when, whether the pacer made it wait)."""
        t = max(now, self.pause_until)
        paced = False
        if self.rate is not None:
            if self.next_slot > t:
                t = self.next_slot
                paced = True
                self.paced_at = now
            self.next_slot = t + 1.0 / self.rate
        self.requests += 1
        if len(self.sent) > 64:
            _trim(self.sent, now, _HORIZON)
        self.sent.append(t)
        return t, paced

    # --------------------------------------------------------------------------- answers
    def on_answer(
        self,
        now: float,
        sent_at: float,
        signal: Signal,
        *,
        latency: float | None = None,
        window_full: bool = False,
        paced: bool = False,
        retry_after: float | None = None,
        reason: str = "",
        target: str | None = None,
    ) -> None:
        """Adapt to one answer (or its absence) of a request sent at ``sent_at`` (for ``target``)."""
        if signal == NEUTRAL:
            return
        if signal == OK:
            self._clean(now, sent_at, latency, window_full, paced)
            return
        self.failures += 1
        self.last_failure = reason or signal
        if signal in (THROTTLE, OVERLOAD):
            again = self._refused_again(target, now)
            if again:
                self._forgive(target)
            host_wide = not again and self._host_wide(now, sent_at, target)
            if signal == THROTTLE:
                self.throttled += 1
                if retry_after is not None and retry_after > self.limits.retry_after_cap:
                    self._skip(
                        f"asked to wait {retry_after:,.0f} s (Retry-After), more than retry_after_cap="
                        f"{self.limits.retry_after_cap:g} s",
                        reason or "http_429",
                    )
                    return
                # The first time a quiet host asks to wait, it is obeyed whole: one 429 is no
                # evidence of a limit (no cut), but at a few answers a second the pause costs little
                # and a slow host that throttles sends few refusals. Later lone refusals are judged
                # against the host's background like any other.
                first = self.throttled == 1 and self.timeouts == 0
                quiet = first and _count_since(self.served, now - _WINDOW) < _PLENTY
                if retry_after and (host_wide or quiet):
                    if self.pause_until < now:
                        self.pause_from = now
                    self.pause_until = max(self.pause_until, now + retry_after)
                    self.next_slot = max(self.next_slot, self.pause_until)
            else:
                self.timeouts += 1
                if host_wide and sent_at >= self.decreased_at:
                    self.cwnd = max(1.0, self.cwnd / 2)
            if host_wide:
                before = (self.rate, self.ceiling, self.ceiling_soft)
                decreases = self.decreases
                since = max(now - _HORIZON, self.decreased_at)
                recent = _count_since(self.refused, since)
                urls = list(self.refused_urls)[len(self.refused_urls) - recent :]
                self._decrease(now, sent_at)
                if self.decreases > decreases and None not in urls:
                    self.cuts.append((set(urls), before))
        else:
            self.failed += 1
        skip_after = self.limits.skip_after
        if skip_after and self.failures >= skip_after and self.skipped is None:
            self._skip(f"{self.failures} failures in a row without one clean answer", self.last_failure)

    def _refused_again(self, target: str | None, now: float) -> bool:
        """Whether ``target`` was refused before while the host has answered others cleanly since.

        Then the refusal is that URL's (some hosts answer 429 or 503 for one object for ever): its
        own retries honour the Retry-After, and the host's rate stays where it is. Only the first
        refusal of a URL can speak for the host; at a low rate one such URL would otherwise look
        like the whole host throttling, every time it is retried, and in every later run.
        """
        if target is None:
            return False
        before = self.refused_targets.pop(target, None)
        self.refused_targets[target] = now
        if len(self.refused_targets) > _REFUSED_TARGETS:
            del self.refused_targets[next(iter(self.refused_targets))]
        return before is not None and bool(self.served) and self.served[-1] > before

    def _forgive(self, target: str | None) -> None:
        """Undo a cut once every URL whose refusal made it was refused again while the host answered
        others cleanly: those were the URLs' refusals, not the host's (under real throttling the
        retried URLs get through). Else each URL that refuses for ever would leave the host slower
        for good, and the next run and the other shards would start from there."""
        for urls, before in list(self.cuts):
            urls.discard(target)
            if urls:
                continue
            self.cuts.remove((urls, before))
            rate, ceiling, soft = before
            if rate is None:
                self.rate = self.cap
            elif self.rate is not None:
                self.rate = self._clamp(max(self.rate, rate))
            if ceiling is None or (self.ceiling is not None and ceiling > self.ceiling):
                self.ceiling, self.ceiling_soft = ceiling, soft

    def _host_wide(self, now: float, sent_at: float, target: str | None) -> bool:
        """Whether the refusals since the last decrease are more than the host's background.

        A host over its limit refuses a share that grows with our rate and ends when we slow down;
        a host's background refusals (a few URLs that refuse, a back end busy now and then: 0.4 % on
        the sandbox) come at the same share whatever the rate. So a refusal speaks for the host only
        when that many refusals, in the last second or since the last decrease (at most 10 s), are
        improbable (Poisson, < ``_IMPROBABLE``) at the share the host refused in the background over
        the last minutes. Without that, at 200 answers a second the background put two refusals in
        one second every few seconds: each was taken for a limit, the rate was cut and the next
        measurement "confirmed" a ceiling at whatever rate that left (in simulation, a host allowing
        200 requests/s with 0.4 % of URLs refusing once was paced at 20 % of its allowance). Before
        a host has shown its background, 0.2 % is assumed: two refusals within a second count among
        up to a dozen answers, three among a few dozen. One refusal alone never cuts the rate (the
        first 429 of a quiet host still pauses it, see :meth:`on_answer`); its URL's own retry honours
        the Retry-After.
        """
        while self.refused and (self.refused[0] < now - _HORIZON or len(self.refused) >= _REFUSALS_KEPT):
            self.refused.popleft()
            self.refused_urls.popleft()
        self.refused.append(now)
        self.refused_urls.append(target)
        self._learn(now, sent_at, refused=True)
        since = max(now - _HORIZON, self.decreased_at)
        second = max(now - _WINDOW, since)
        refused = _count_since(self.refused, second)
        answers = refused + _count_since(self.served, second)
        # against the background share learned before this second (its own refusals would hide a
        # burst among few answers)
        if _improbable(refused, self._background_share(refused) * answers):
            return True
        # a mild excess over up to 10 s (a probe a little above a limit): weak evidence one by one,
        # so those refusals stay in the background share (early in a run it would else be the prior
        # alone, and a fast host's background would look like a limit)
        refused = _count_since(self.refused, since)
        answers = refused + _count_since(self.served, since)
        return _improbable(refused, self._background_share(0) * answers)

    def _learn(self, now: float, sent_at: float, *, refused: bool) -> None:
        """Count one answer (refused or clean) in the background share, when it tells it (:meth:`_learns`)."""
        if self._learns(sent_at):
            self._decay(now)
            self.background_answers += 1.0
            self.background_refusals += 1.0 if refused else 0.0

    def _learns(self, sent_at: float) -> bool:
        """Whether the answer to a request sent at ``sent_at`` tells the host's background share.

        Learned at once (a run's first seconds need it most), but not from requests sent before a
        decrease had its effect (the bulk of a burst of throttling: a slow start overshooting a
        limit is refused hundreds of times in a second), nor while probing above a ceiling (a
        limit's mild excess, learned, would raise the share until the limit looked like background
        and was overrun). Clean answers and refusals are left out alike: counting the clean answers
        of those moments but not their refusals made the share too low, and a host refusing 2 % at
        random was cut again and again (in simulation, down to a fifth of its throughput).
        """
        beyond = self.ceiling is not None and self.rate is not None and self.rate > self.ceiling
        return sent_at >= self.decreased_at + _HOLD and not beyond

    def _background_share(self, leave_out: int) -> float:
        """The share of answers the host refuses in the background (less ``leave_out`` refusals), at
        its upper bound (one standard deviation) while the evidence is thin."""
        refusals = max(0.0, self.background_refusals - leave_out) + _PRIOR_SHARE * _PRIOR_ANSWERS
        answers = max(0.0, self.background_answers - leave_out) + _PRIOR_ANSWERS
        return (refusals + math.sqrt(refusals)) / answers

    def _decay(self, now: float) -> None:
        """Age the background counts (once a second at most: the span is minutes)."""
        if self.background_at is None:  # counts from an earlier run age from their first use
            self.background_at = now
        elif now - self.background_at >= 1.0:
            keep = math.exp(-(now - self.background_at) / _BACKGROUND_SPAN)
            self.background_answers *= keep
            self.background_refusals *= keep
            self.background_at = now

    def _skip(self, why: str, cause: str) -> None:
        self.skipped = HostSkipped(
            f"host {self.host} skipped for the rest of the run: {why} (last: {cause}); a re-run tries it again",
            cause=cause,
        )

    def _decrease(self, now: float, sent_at: float) -> None:
        if sent_at < self.decreased_at + _HOLD:
            # an answer to a request sent before we slowed down (or just after: per-second limiters
            # keep refusing until their window ends): the same overload, seen late
            return
        floor = self.limits.min_rate
        if self.rate is None:
            # The first throttling, after unpaced slow start: what the host served in the last second
            # is what it lets through in a second, or a burst allowance; a soft ceiling (probed fast,
            # forgotten soon) when that is enough answers to go by, else none: the rate then grows
            # fast until the next throttling says where the limit is.
            served = _count_since(self.served, now - _WINDOW)
            sent = _count_since(self.sent, now - _WINDOW)
            if served >= _EVIDENCE:
                self.ceiling, self.ceiling_soft = float(served), True
            self.rate = self._clamp(max(served, sent, _FIRST_RATE) * self.limits.decrease)
            self._record_decrease(now)
            return
        # Over how long to count: the last _EVIDENCE clean answers (1 to 10 seconds), less any
        # Retry-After pause in that span (nothing was sent then).
        span = _WINDOW
        if len(self.served) >= _EVIDENCE:
            span = min(_HORIZON, max(_WINDOW, now - self.served[-_EVIDENCE]))
        since = now - span
        paused = max(0.0, min(now, self.pause_until) - max(since, self.pause_from))
        active = max(span - paused, 0.25 * span)
        served = _count_since(self.served, since)
        sent = _count_since(self.sent, since)
        if (
            self.paced_at >= since  # the pacer held requests back: we sent at our rate…
            and sent >= 0.5 * self.rate * active
            and served >= _EVIDENCE  # …and enough answers came back to measure the host by
        ):
            # The host refused while we sent at our rate: it bears what it served, at most that
            # rate. That is its ceiling.
            base = min(self.rate, max(served / active, floor))
            old = self.ceiling
            if old is not None and abs(base - old) <= 0.1 * old and self.rate >= _NEAR * old:
                # the host refused at the same rate again: it is its limit; hold below it for a
                # while before probing (30 s, doubling with each confirmation, up to 10 minutes),
                # so a long run is not paused by a Retry-After every few seconds. Refused while
                # resting just below it, the limit is lower, or the refusals were chance: halfway
                # down, so chance cannot ratchet the ceiling down 3 % at a time.
                self.confirmed += 1
                self.probe_after = now + min(_HOLD_MAX, _HOLD_FIRST * 2 ** (self.confirmed - 1))
                base = max(base, 0.5 * (base + old))
            else:
                self.confirmed = 0
                self.probe_after = now
            self.ceiling = base
            # measured once, it may be chance: a few URLs that refuse at random (0.4 % on the
            # sandbox) coincide now and then at any rate, and a hard ceiling (probed at 0.3 %/s)
            # would only ever ratchet down; the host confirming it makes it hard
            self.ceiling_soft = self.confirmed == 0
            self.rate = self._clamp(base * self.limits.decrease)
        else:
            # Too few answers to measure the host by (a slow host, a pause, little to fetch): the
            # refusal says to slow down, and that the rate we had was too much, for now. That is a
            # soft ceiling, probed faster than a measured one.
            before = self.rate
            self.rate = self._clamp(before * self.limits.decrease)
            if self.ceiling is None or before < self.ceiling:
                self.ceiling_soft = self.ceiling is None or self.ceiling_soft
                self.ceiling = before
        self._record_decrease(now)

    def _record_decrease(self, now: float) -> None:
        assert self.rate is not None
        self.next_slot = max(self.next_slot, now + 1.0 / self.rate)
        self.slow_start = False
        self.decreased_at = now
        self.grown_at = now
        self.decreases += 1

    def _clean(
        self, now: float, sent_at: float, latency: float | None, window_full: bool, paced: bool
    ) -> None:
        self.answered += 1
        self.failures = 0
        self._learn(now, sent_at, refused=False)
        self.served.append(now)
        if len(self.served) > 64:
            _trim(self.served, now, _HORIZON)
        inflated = False
        if latency is not None:
            if self.latency is None:
                self.latency = self.base_latency = latency
            else:
                self.latency += 0.2 * (latency - self.latency)
                base = self.base_latency or latency
                self.base_latency = latency if latency < base else base + 0.01 * (latency - base)
                inflated = self.latency > 2 * self.base_latency + 0.05
        dt = min(1.0, max(0.0, now - self.grown_at))
        self.grown_at = now
        if inflated:
            return
        if window_full and self.cwnd < self.max_concurrency:
            self.cwnd = min(
                float(self.max_concurrency), self.cwnd + (1.0 if self.slow_start else 1.0 / self.cwnd)
            )
        if paced and self.rate is not None and now >= self.pause_until:
            self._grow(dt)

    def _grow(self, dt: float) -> None:
        rate, ceiling = self.rate, self.ceiling
        assert rate is not None
        if ceiling is None:
            rate *= 2.0**dt  # nothing known: double per second
        elif rate < _NEAR * ceiling:
            rate += (_TARGET * ceiling - rate) * min(1.0, 2.0 * dt)  # back near the ceiling, quickly
        elif self.probe_after > self.grown_at:
            rate = max(rate, min(rate + ceiling * dt, _TARGET * ceiling))  # a confirmed limit: stay below it
        else:
            rate += (_PROBE_SOFT if self.ceiling_soft else _PROBE) * ceiling * dt  # near it: probe gently
            if rate > 1.3 * ceiling:
                self.ceiling = None  # it bears more than that now
        self.rate = self._clamp(rate)


def _trim(times: deque[float], now: float, span: float) -> None:
    """Drop the times older than ``span`` seconds."""
    limit = now - span
    while times and times[0] < limit:
        times.popleft()


def _improbable(events: int, expected: float) -> bool:
    """Whether ``events`` or more are improbable (< ``_IMPROBABLE``) when ``expected`` come at
    random (a Poisson tail; a refusal share is small, so the binomial is close to it)."""
    if events <= 0:
        return False
    if events > expected + 10.0 * math.sqrt(expected) + 10.0:
        return True
    term = math.exp(-expected)
    below = 0.0
    for i in range(events):
        below += term
        term *= expected / (i + 1)
    return 1.0 - below < _IMPROBABLE


def _count_since(times: deque[float], since: float) -> int:
    """How many of the (ascending) ``times`` are at or after ``since`` (counted from the newest)."""
    n = 0
    for t in reversed(times):
        if t < since:
            break
        n += 1
    return n


class _Token:
    """One request's reservation with a host: when it was sent and what that tells the controller."""

    __slots__ = ("sent_at", "window_full", "paced", "done")

    def __init__(self, sent_at: float, window_full: bool, paced: bool) -> None:
        self.sent_at = sent_at
        self.window_full = window_full
        self.paced = paced
        self.done = False


class HostGate:
    """The asyncio side of a host's politeness: in-flight slots, the pacer and the pause."""

    def __init__(self, control: HostControl) -> None:
        self.control = control
        self.in_flight = 0
        #: jobs of this host waiting to retry (a Retry-After, a backoff): handed out, not using it
        self.resting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._room_listeners: list[Callable[[], None]] = []

    @property
    def skipped(self) -> HostSkipped | None:
        return self.control.skipped

    def has_room(self, assigned: int) -> bool:
        """Whether the scheduler may hand out one more job for this host (``assigned`` already out).

        Jobs resting before a retry do not count: at 200 requests/s a paced host has a window of
        four, and two or three refused URLs waiting out a one-second Retry-After held the host at a
        third of its allowance for that second (the politeness bench lost 5-10 % of it that way).
        The requests themselves stay within the window (:meth:`acquire`).
        """
        return self.control.skipped is not None or assigned - self.resting < self.control.limit

    def on_room(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when a job starts resting (the host may take another one)."""
        self._room_listeners.append(listener)

    @contextlib.asynccontextmanager
    async def rest(self) -> AsyncIterator[None]:
        """A job of this host waits to retry: it leaves its place to another job meanwhile."""
        self.resting += 1
        for listener in self._room_listeners:
            listener()
        try:
            yield
        finally:
            self.resting -= 1

    async def acquire(self) -> tuple[_Token, float]:
        """Wait for a slot and for the pacer; (token for :meth:`release`, seconds spent waiting)."""
        started = time.monotonic()
        control = self.control
        if control.skipped is not None:
            raise control.skipped
        while self.in_flight >= control.limit:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except BaseException:
                if not fut.cancelled() and fut.done():
                    self._wake()  # pass on the wake-up we were given
                raise
            if control.skipped is not None:
                raise control.skipped
        window_full = self.in_flight + 1 >= control.limit
        self.in_flight += 1
        try:
            now = time.monotonic()
            when, paced = control.schedule(now)
            if when > now:
                await asyncio.sleep(when - now)
            if control.skipped is not None:
                raise control.skipped
        except BaseException:
            self.in_flight -= 1
            self._wake()
            raise
        now = time.monotonic()
        return _Token(now, window_full, paced), now - started

    def release(
        self,
        token: _Token,
        signal: Signal,
        *,
        latency: float | None = None,
        retry_after: float | None = None,
        reason: str = "",
        target: str | None = None,
    ) -> None:
        if token.done:
            return
        token.done = True
        self.in_flight -= 1
        self.control.on_answer(
            time.monotonic(),
            token.sent_at,
            signal,
            latency=latency,
            window_full=token.window_full,
            paced=token.paced,
            retry_after=retry_after,
            reason=reason,
            target=target,
        )
        self._wake()

    def _wake(self) -> None:
        room = self.control.limit - self.in_flight
        if self.control.skipped is not None:
            room = len(self._waiters)
        while room > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                room -= 1
