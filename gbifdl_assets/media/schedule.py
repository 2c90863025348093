"""Jobs queued per host, handed to workers only when their host can take one more request.

With one queue for all hosts, a host that allows 20 requests/s collects the workers: each job of
it waits for the host's turn, and soon every worker waits on the slow host while the fast ones sit
idle (the downloader managed 3 images/s against hosts allowing 60 in all that way). So the
:class:`HostScheduler` keeps a backlog per host and gives a worker the next job of a host that has
room (fewer jobs out than its current window, :attr:`.hosts.HostControl.limit`, not counting jobs
that wait to retry: :meth:`.hosts.HostGate.rest`), taking hosts in turn. A host allowing 20
requests/s then ties up one to four workers, whatever its share of the manifest, and the others keep
every other host busy.

Memory stays bounded: :meth:`HostScheduler.put` waits while ``max_pending`` jobs are queued. When
one host's backlog fills that budget, reading the manifest waits for it; the run then goes at that
host's pace, which is as fast as it can finish anyway.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from gbifdl_assets.media.hosts import HostGate

__all__ = ["HostScheduler"]


class HostScheduler:
    """A per-host backlog of jobs for the worker tasks of one event loop (see the module docstring).

    ``gate_of(host)`` gives the host's :class:`~.hosts.HostGate` (``Fetcher.host``); jobs whose host
    key is empty (URLs that cannot be fetched) are handed out at once.
    """

    def __init__(self, gate_of: Callable[[str], HostGate], max_pending: int) -> None:
        self._gate_of = gate_of
        self._max = max(1, max_pending)
        self._backlog: dict[str, deque[Any]] = {}
        self._assigned: Counter[str] = Counter()
        self._ready: deque[str] = deque()
        self._in_ready: set[str] = set()
        self._watched: set[str] = set()  # hosts whose gate tells us when one of their jobs rests
        self._pending = 0
        self._closed = False
        self._waiters: deque[asyncio.Future[None]] = deque()  # idle workers, woken one per ready host
        self._space = asyncio.Event()

    @property
    def pending(self) -> int:
        return self._pending

    def backlog(self) -> dict[str, int]:
        """Queued jobs per host (for progress logs)."""
        return {h: len(q) for h, q in self._backlog.items() if q}

    async def put(self, job: Any, host: str) -> None:
        """Queue ``job`` for ``host``; waits while ``max_pending`` jobs are queued."""
        while self._pending >= self._max:
            self._space.clear()
            await self._space.wait()
        self.put_nowait(job, host)

    def put_nowait(self, job: Any, host: str) -> None:
        self._backlog.setdefault(host, deque()).append(job)
        self._pending += 1
        self._mark(host)

    def take_back(self, host: str) -> list[Any]:
        """Remove and return the queued (not yet handed out) jobs of ``host``."""
        queue = self._backlog.pop(host, None)
        if not queue:
            return []
        self._pending -= len(queue)
        self._space.set()
        return list(queue)

    def close(self) -> None:
        """No more jobs will come: :meth:`get` returns None once the backlog is empty."""
        self._closed = True
        self._wake(len(self._waiters))

    async def get(self) -> tuple[Any, str] | None:
        """The next job and its host (call :meth:`done` with the host when it is finished), or None."""
        while True:
            while self._ready:
                host = self._ready.popleft()
                self._in_ready.discard(host)
                queue = self._backlog.get(host)
                if not queue or not self._room(host):
                    continue  # marked again when one of its jobs ends
                job = queue.popleft()
                if not queue:
                    del self._backlog[host]
                self._assigned[host] += 1
                self._pending -= 1
                self._space.set()
                self._mark(host)  # still room and work: back in line, behind the other hosts
                return job, host
            if self._closed and self._pending == 0:
                self._wake(len(self._waiters))  # let the other workers see it too
                return None
            # Wait for a host to get work and room: a job put, or one ending (a host's window only
            # grows on its own answers, whose jobs then end).
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake(1)  # pass the wake-up on
                raise

    def done(self, host: str) -> None:
        """A job of ``host`` handed out by :meth:`get` is finished."""
        self._assigned[host] -= 1
        if self._assigned[host] <= 0:
            del self._assigned[host]
        self._mark(host)

    def _room(self, host: str) -> bool:
        if not host:
            return True
        gate = self._gate_of(host)
        if host not in self._watched:  # a job starting to rest before a retry makes room
            self._watched.add(host)
            gate.on_room(lambda: self._mark(host))
        return gate.has_room(self._assigned[host])

    def _mark(self, host: str) -> None:
        if host not in self._in_ready and self._backlog.get(host) and self._room(host):
            self._ready.append(host)
            self._in_ready.add(host)
            self._wake(1)

    def _wake(self, n: int) -> None:
        while n > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1
