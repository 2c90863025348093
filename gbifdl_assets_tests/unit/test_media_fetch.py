"""Fetch configuration and Retry-After parsing (network behaviour: integration/test_media_faults.py)."""

from __future__ import annotations

import email.utils
import hashlib
import time

import pyarrow as pa
import pytest

from gbifdl_assets.http_headers import parse_retry_after
from gbifdl_assets.media.download import Progress
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.rows import content_key_of as _content_key
from gbifdl_assets.media.rows import row_batches as _row_batches


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1.5)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_fetch_config_validation() -> None:
    cfg = FetchConfig(allow_loopback=True)
    assert cfg.policy.allow_loopback and not cfg.policy.allow_private
    with pytest.raises(ValueError, match="per_host=0"):
        FetchConfig(per_host=0)
    with pytest.raises(ValueError, match="deadline"):
        FetchConfig(deadline=0)


def test_worker_share_of_the_limits() -> None:
    from gbifdl_assets.media.pool import worker_fetch_config

    share = worker_fetch_config(FetchConfig(concurrency=64, per_host=16, allow_loopback=True), 3)
    assert (share.concurrency, share.per_host, share.allow_loopback) == (22, 6, True)
    assert worker_fetch_config(FetchConfig(concurrency=1, per_host=1), 4).per_host == 1


def test_rows_are_read_from_tables_batches_and_dicts() -> None:
    urls = [f"http://example.org/{i}.jpg" for i in range(5)]
    table = pa.table({"url": urls, "label": [1, 2, 3, 4, 5]})
    from_table = [r for b in _row_batches(table, size=2) for r in b]
    from_batches = [r for b in _row_batches(iter(table.to_batches(max_chunksize=3)), size=2) for r in b]
    from_dicts = [r for b in _row_batches(iter(table.to_pylist()), size=2) for r in b]
    assert from_table == from_batches == from_dicts == table.to_pylist()


def test_content_key_is_checked_or_computed() -> None:
    url = "http://example.org/a.jpg"
    key = hashlib.sha256(url.encode()).hexdigest()
    assert _content_key({"url": url}) == (key, url, None)
    assert _content_key({"url": url, "content_key": key}) == (key, url, None)
    bad = _content_key({"url": url, "content_key": "0" * 64})
    assert bad[2] and "is not sha256(url)" in bad[2]
    assert _content_key({"content_key": key})[2] == "row has no url"


def test_progress_message() -> None:
    p = Progress(
        done=1500,
        ok=1400,
        failed=90,
        skipped=10,
        bytes=20_000_000,
        elapsed=3.0,
        rate=500.0,
        total=10_000,
        failed_by_reason={"http_404": 60, "timeout": 30},
    )
    msg = p.message()
    assert "1,500 of 10,000 done" in msg and "500 img/s" in msg and "http_404 60" in msg and "20.0 MB" in msg
