"""The same-origin-write rules of the annotation service, on hand-made ASGI scopes (no server)."""

from __future__ import annotations

import pytest

from gbifdl_assets.annotations.service.csrf import SameOriginWrites, normalize_origin


def scope(method: str = "POST", scheme: str = "http", **headers: str) -> dict:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": method, "scheme": scheme, "headers": raw, "server": ("127.0.0.1", 8090)}


def guard(*allowed: str) -> SameOriginWrites:
    return SameOriginWrites(lambda s, r, w: None, allowed_origins=allowed)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("http://Example.ORG", "http://example.org:80"),
        ("https://example.org:443", "https://example.org:443"),
        ("http://127.0.0.1:8090", "http://127.0.0.1:8090"),
        ("http://[::1]:8090", "http://::1:8090"),
        ("null", None),
        ("file://", None),
        ("http://host:notaport", None),
        ("", None),
    ],
)
def test_origins_are_compared_in_one_spelling(text, normal):
    assert normalize_origin(text) == normal


def test_reads_are_never_refused_and_bodyless_script_writes_pass():
    g = guard()
    assert g.refusal(scope("POST", host="127.0.0.1:8090")) is None  # curl -X POST -u …
    assert g.refusal(scope("DELETE", host="127.0.0.1:8090", content_length="0")) is None
    assert g.refusal(scope("PUT", host="h", content_type="application/json; charset=UTF-8")) is None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"origin": "http://evil.example", "content_type": "application/json"}, 403),
        ({"origin": "http://localhost:8090", "content_type": "application/json"}, 403),  # Host is 127.0.0.1
        ({"sec_fetch_site": "same-site", "content_type": "application/json"}, 403),
        ({"content_type": "text/plain", "content_length": "20"}, 415),
        ({"content_type": "application/x-www-form-urlencoded", "content_length": "0"}, 415),
        ({"content_length": "20"}, 415),
        ({"transfer_encoding": "chunked"}, 415),
        (
            {
                "origin": "http://127.0.0.1:8090",
                "sec_fetch_site": "same-origin",
                "content_type": "text/plain",
            },
            415,
        ),
        ({"origin": "http://127.0.0.1:8090", "sec_fetch_site": "same-origin", "content_length": "0"}, None),
        ({"origin": "http://127.0.0.1:8090", "content_type": "application/json"}, None),
    ],
)
def test_writes_are_refused_by_origin_then_by_content_type(headers, status):
    refused = guard().refusal(scope("POST", host="127.0.0.1:8090", **headers))
    assert (refused[0] if refused else None) == status


def test_a_configured_origin_may_write_and_behind_tls_the_scheme_counts():
    g = guard("https://cleaning.example.org")
    page = {"origin": "https://cleaning.example.org", "sec_fetch_site": "cross-site"}
    assert g.refusal(scope(host="annotations.example.org", **page)) is None
    assert g.refusal(scope(host="annotations.example.org", origin="https://other.example.org"))[0] == 403
    # the service's own origin includes its scheme: an http page may not write to an https service
    assert g.refusal(scope(scheme="https", host="svc.example.org", origin="http://svc.example.org"))[0] == 403
    assert g.refusal(scope(scheme="https", host="svc.example.org", origin="https://svc.example.org")) is None
    with pytest.raises(ValueError, match="not an origin"):
        guard("example.org")
