"""Loopback port helpers shared by the service harnesses."""

from __future__ import annotations

import socket
import time

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK, preferred: int | None = None) -> int:
    """Return a TCP port that is free on ``host`` right now: ``preferred`` when it is, else one the
    kernel picks.

    The kernel picks it (bind to port 0), so two harnesses started in parallel do not collide the
    way a fixed or random-guess port would. There is a small window between closing this socket
    and the server binding the port; the servers we start report a bind failure clearly, so that
    race shows up as a readable startup error rather than a hang.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, preferred or 0))
        except OSError:
            if not preferred:
                raise
            sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll until ``host:port`` accepts connections; return False when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_open(port, host):
            return True
        time.sleep(interval)
    return False
