"""Replay recorded GBIF traffic (pygbif vcrpy and rgbif R-vcr cassettes) through ``requests``.

``load_cassette(path)`` reads either format into :class:`Interaction` objects; a
:class:`ReplayAdapter` mounted on a ``requests.Session`` answers each request with the first unused
recorded interaction whose method, host, path and query parameters match, so a client under test
talks to "GBIF" exactly as it was recorded: repeated identical requests (a 429 followed by a 200, a
download status polled 56 times) are answered in recording order. A request with no recording
raises :class:`CassetteMiss` (an AssertionError, so the client's retry logic never swallows it).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import requests
import yaml
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

FIXTURES_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "gbif").resolve()
RECORDED = FIXTURES_DIR / "recorded"
PYGBIF = RECORDED / "pygbif"
RGBIF = RECORDED / "rgbif"

#: headers describing the wire encoding of the recorded body, which we store decoded
_DROP_HEADERS = {"content-encoding", "transfer-encoding", "content-length", "status"}


class CassetteMiss(AssertionError):
    """The client sent a request that the cassette has no (unused) recording for."""


@dataclass
class Interaction:
    method: str
    uri: str
    request_body: str | None
    status: int
    headers: dict[str, str]
    body: bytes
    used: bool = field(default=False, compare=False)

    @property
    def path(self) -> str:
        return urlsplit(self.uri).path

    @property
    def host(self) -> str:
        return urlsplit(self.uri).netloc.lower()

    @property
    def params(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.uri).query, keep_blank_values=True)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def request_json(self) -> Any:
        return json.loads(self.request_body) if self.request_body else None


def _headers(raw: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (raw or {}).items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        out[str(name).lower()] = str(value)
    return out


def _body(raw: Any) -> bytes:
    if raw is None:
        return b""
    if isinstance(raw, str | bytes):
        return raw.encode() if isinstance(raw, str) else raw
    if raw.get("raw_gzip"):
        return zlib.decompress(base64.b64decode(raw["raw_gzip"]))
    value = raw.get("string")
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


@functools.lru_cache(maxsize=64)
def _parsed(path: Path) -> list[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader parses 1 MB pages fast
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    return data.get("interactions") or data.get("http_interactions") or []


def load_cassette(path: str | Path) -> list[Interaction]:
    """All interactions of a vcrpy (``interactions``) or R vcr (``http_interactions``) cassette.

    Each call returns fresh objects (replay marks them used), parsed YAML is cached.
    """
    out = []
    for item in _parsed(Path(path).resolve()):
        req, resp = item["request"], item["response"]
        status = resp["status"]
        status = int(status["code"] if isinstance(status, Mapping) else status)
        req_body = req.get("body")
        if isinstance(req_body, Mapping):
            req_body = req_body.get("string")
        if not isinstance(req_body, str) or req_body in ("", "false"):
            req_body = None
        out.append(
            Interaction(
                method=str(req["method"]).upper(),
                uri=req["uri"],
                request_body=req_body,
                status=status,
                headers=_headers(resp.get("headers")),
                body=_body(resp.get("body")),
            )
        )
    return out


def _normalise(
    params: Iterable[tuple[str, str]], ignore: frozenset[str], defaults: Mapping[str, str]
) -> list[tuple[str, str]]:
    out = [(k, v.lower()) for k, v in params if v != "" and k not in ignore]
    present = {k for k, _ in out}
    out.extend((k, v.lower()) for k, v in defaults.items() if k not in present and k not in ignore)
    return sorted(out)


class ReplayAdapter(BaseAdapter):
    """A transport that answers from recorded interactions (see module docstring).

    ``ignore``: query parameters not compared (e.g. ``limit``, which the client caps differently
    than the recording client). ``defaults``: values assumed when a side omits a parameter, so
    ``offset=0``/``verbose=false`` on one side matches their absence on the other. Values are
    compared case-insensitively (R sends ``verbose=FALSE``).
    """

    DEFAULTS = {"offset": "0", "verbose": "false", "strict": "false"}

    def __init__(
        self,
        interactions: Iterable[Interaction],
        *,
        ignore: Iterable[str] = (),
        defaults: Mapping[str, str] | None = None,
    ):
        super().__init__()
        self.interactions = list(interactions)
        self.ignore = frozenset(ignore)
        self.defaults = dict(self.DEFAULTS if defaults is None else defaults)
        self.requests: list[requests.PreparedRequest] = []

    def _key(self, method: str, url: str) -> tuple[str, str, str, list[tuple[str, str]]]:
        parts = urlsplit(url)
        return (
            method.upper(),
            parts.netloc.lower(),
            unquote(parts.path),  # R recorded "<gbif_user>" unencoded in the path
            _normalise(parse_qsl(parts.query, keep_blank_values=True), self.ignore, self.defaults),
        )

    def find(self, method: str, url: str) -> Interaction:
        wanted = self._key(method, url)
        for interaction in self.interactions:
            if not interaction.used and self._key(interaction.method, interaction.uri) == wanted:
                return interaction
        raise CassetteMiss(f"no unused recorded interaction for {method} {url}")

    def send(
        self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        self.requests.append(request)
        interaction = self.find(request.method or "GET", request.url or "")
        interaction.used = True
        response = requests.Response()
        response.status_code = interaction.status
        response.headers = CaseInsensitiveDict(
            {k: v for k, v in interaction.headers.items() if k not in _DROP_HEADERS}
        )
        response._content = interaction.body
        response._content_consumed = True
        response.raw = io.BytesIO(interaction.body)
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        response.reason = ""
        return response

    def close(self) -> None:  # nothing to release
        pass

    @property
    def unused(self) -> list[Interaction]:
        return [i for i in self.interactions if not i.used]


def replay_session(
    interactions: Iterable[Interaction],
    *,
    ignore: Iterable[str] = (),
    defaults: Mapping[str, str] | None = None,
) -> tuple[requests.Session, ReplayAdapter]:
    """A session whose http and https traffic is answered by a :class:`ReplayAdapter`."""
    adapter = ReplayAdapter(interactions, ignore=ignore, defaults=defaults)
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter


def cassette_files() -> list[Path]:
    return sorted(PYGBIF.glob("*.yaml")) + sorted(RGBIF.glob("*.yml"))


def is_search_page(interaction: Interaction) -> bool:
    """A 200 answer of /v1/occurrence/search that returned records (not a pure count)."""
    if (
        interaction.method != "GET"
        or not interaction.path.endswith("/occurrence/search")
        or interaction.status != 200
    ):
        return False
    return bool(interaction.json().get("results"))
