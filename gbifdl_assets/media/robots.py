"""robots.txt (RFC 9309) as a media downloader reads it: which paths of a host we may request.

:func:`parse_robots` turns a robots.txt into the :class:`RobotsRules` of the group that names us
(our User-Agent's product token, ``gbifdl-assets`` by default; case-insensitive) or, when no group
does, of the ``*`` groups. A path is allowed unless the longest matching rule is a ``Disallow``
(``Allow`` wins a tie); ``*`` matches any run of characters and a final ``$`` anchors the end;
``/robots.txt`` itself is always allowed. A ``Crawl-delay`` is kept (the fetcher turns it into a
ceiling on the host's request rate).

What a robots.txt can be in the wild, and what we make of it (:func:`rules_for_answer`):

* **missing or refused** (any 4xx but 429): no rules, everything allowed (RFC 9309 2.3.1.3);
* **unreachable** (5xx, 429, a timeout): "assume complete disallow" says the RFC; the fetcher
  records the host's images as failed ``robots_unavailable`` (retried by the next run) rather than
  as opted out, and asks again after a minute;
* **huge**: only the first ``max_bytes`` (500 KiB, the least the RFC asks crawlers to read) are
  parsed, and at most 10,000 rules of the matching groups are kept;
* **HTML** (a CMS answering every path with its start page) or **binary**: not a robots.txt; no
  rules, with a note;
* **malformed lines** (no colon, unknown fields, rules before any User-agent line): skipped, as
  the RFC says, without invalidating the rest.

The fetcher (:mod:`.fetch`) asks for robots.txt once per scheme/host/port and keeps the rules for
``Cache-Control: max-age`` (between one hour and a day; a day without it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = [
    "ALLOW_ALL",
    "MAX_ROBOTS_BYTES",
    "RobotsRules",
    "parse_robots",
    "robots_ttl",
    "rules_for_answer",
]

MAX_ROBOTS_BYTES = 500 * 1024
_MAX_RULES = 10_000
_DEFAULT_TTL = 24 * 3600.0
_MIN_TTL = 3600.0
_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)", re.IGNORECASE)


def _normalize(path: str) -> str:
    """Percent-escapes upper-cased; escaped unreserved characters decoded (RFC 3986 equivalence)."""

    def fix(m: re.Match[str]) -> str:
        char = unquote(m.group(0))
        if char.isascii() and (char.isalnum() or char in "-._~"):
            return char
        return m.group(0).upper()

    if "%" in path:
        path = _PERCENT.sub(fix, path)
    if not path.isascii():
        path = "".join(c if c.isascii() else "".join(f"%{b:02X}" for b in c.encode()) for c in path)
    return path


@dataclass(frozen=True)
class _Rule:
    allow: bool
    pattern: str  # normalized
    regex: re.Pattern[str] | None  # None: a plain prefix

    def matches(self, path: str) -> bool:
        if self.regex is None:
            return path.startswith(self.pattern)
        return self.regex.match(path) is not None


def _rule(allow: bool, value: str) -> _Rule | None:
    value = value.strip()
    if not value:
        return None  # "Disallow:" with nothing: no rule
    if not value.startswith(("/", "*")):
        value = "/" + value  # a common slip ("Disallow: private/"); read as the path it means
    pattern = _normalize(value)
    if "*" not in pattern and not pattern.endswith("$"):
        return _Rule(allow, pattern, None)
    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    regex = ".*".join(re.escape(piece) for piece in body.split("*")) + (r"\Z" if anchored else "")
    return _Rule(allow, pattern, re.compile(regex, re.DOTALL))


@dataclass(frozen=True)
class RobotsRules:
    """The rules of a host that apply to us."""

    rules: tuple[_Rule, ...] = ()
    crawl_delay: float | None = None
    #: what was odd about the file (``robots.txt served as HTML: ignored``…), for logs
    note: str = ""
    groups: int = field(default=0, compare=False)

    def verdict(self, target: str) -> tuple[bool, str]:
        """(allowed?, the deciding rule) for a request target (path and query, percent-encoded)."""
        path = _normalize(target or "/")
        if path == "/robots.txt":
            return True, ""
        best: _Rule | None = None
        for rule in self.rules:
            if rule.matches(path) and (
                best is None
                or len(rule.pattern) > len(best.pattern)
                or (len(rule.pattern) == len(best.pattern) and rule.allow and not best.allow)
            ):
                best = rule
        if best is None:
            return True, ""
        return best.allow, f"{'Allow' if best.allow else 'Disallow'}: {best.pattern}"

    def allows(self, target: str) -> bool:
        return self.verdict(target)[0]


ALLOW_ALL = RobotsRules(note="no robots.txt")


def _token_of(value: str) -> str:
    return value.strip().split("/", 1)[0].split(" ", 1)[0].strip().lower()


def parse_robots(text: str, token: str) -> RobotsRules:
    """The rules for robot ``token`` (lower-case product token) of a robots.txt text."""
    groups: list[tuple[set[str], list[_Rule], list[float]]] = []
    current: tuple[set[str], list[_Rule], list[float]] | None = None
    in_agents = False
    skipped = 0
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, colon, value = line.partition(":")
        if not colon:
            skipped += 1
            continue
        key = key.strip().lower().replace("_", "-")
        if key in ("user-agent", "useragent"):
            if current is None or not in_agents:
                current = (set(), [], [])
                groups.append(current)
            current[0].add(_token_of(value) or "*")
            in_agents = True
            continue
        in_agents = False
        if current is None:
            if key in ("allow", "disallow", "crawl-delay"):
                skipped += 1  # a rule before any User-agent line belongs to no group
            continue
        if key in ("allow", "disallow"):
            if len(current[1]) < _MAX_RULES:
                rule = _rule(key == "allow", value)
                if rule is not None:
                    current[1].append(rule)
        elif key == "crawl-delay":
            try:
                delay = float(value.strip())
            except ValueError:
                skipped += 1
                continue
            if 0 < delay < 86400:
                current[2].append(delay)
    mine = [g for g in groups if token in g[0]] or [g for g in groups if "*" in g[0]]
    rules = tuple(rule for g in mine for rule in g[1])[:_MAX_RULES]
    delays = [d for g in mine for d in g[2]]
    note = f"{skipped} malformed lines skipped" if skipped else ""
    return RobotsRules(rules, max(delays) if delays else None, note, len(groups))


def _looks_like_html(body: bytes, content_type: str | None) -> bool:
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    head = body[:512].lstrip().lower()
    return ctype in ("text/html", "application/xhtml+xml") or head.startswith(
        (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")
    )


def rules_for_answer(
    status: int, body: bytes, content_type: str | None, token: str, *, truncated: bool = False
) -> RobotsRules | None:
    """The rules a robots.txt answer means, or None when the file is unreachable (5xx, 429)."""
    if status == 429 or status >= 500:
        return None
    if not 200 <= status < 300:
        return RobotsRules(note=f"no robots.txt (HTTP {status}): everything allowed")
    if _looks_like_html(body, content_type):
        return RobotsRules(note="robots.txt served as HTML: not a robots.txt, ignored")
    if b"\x00" in body[:4096]:
        return RobotsRules(note="robots.txt is binary: not a robots.txt, ignored")
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff")
    if truncated:  # the last line may be cut in the middle: drop it
        text = text.rsplit("\n", 1)[0]
    rules = parse_robots(text, token)
    if truncated:
        note = f"robots.txt larger than {len(body):,} bytes: only the first part read"
        rules = RobotsRules(
            rules.rules, rules.crawl_delay, "; ".join(n for n in (rules.note, note) if n), rules.groups
        )
    return rules


def robots_ttl(cache_control: str | None) -> float:
    """How long to keep a robots.txt: its max-age within [1 h, 24 h], else 24 h."""
    if cache_control:
        m = _MAX_AGE.search(cache_control)
        if m:
            return min(_DEFAULT_TTL, max(_MIN_TTL, float(m.group(1))))
    return _DEFAULT_TTL
