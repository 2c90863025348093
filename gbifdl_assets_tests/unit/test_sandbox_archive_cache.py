"""The sandbox's archive cache: the data entries of a DWCA rendered once, each download's metadata its own."""

from __future__ import annotations

import time
import zipfile

import numpy as np
import pytest

from gbifdl_assets.sandbox import SandboxConfig, build_world
from gbifdl_assets.sandbox import dwca as dwca_module
from gbifdl_assets.sandbox.archive_cache import KEEP, ArchiveCache, cache_key
from gbifdl_assets.sandbox.dwca import Stopped, write_archive

DATA = ("occurrence.txt", "verbatim.txt", "multimedia.txt")
MEDIA = "http://127.0.0.1:47613"


@pytest.fixture(scope="module")
def world():
    return build_world(42, 3_000, 50)


def _write(world, rows, dest, n: int, **kwargs) -> zipfile.ZipFile:
    write_archive(
        world,
        rows,
        dest,
        key=f"000000{n}-261208000000000",
        doi=f"10.15468/dl.cache{n}",
        created=f"2026-12-0{n}T00:00:00.000+00:00",
        predicate={"type": "equals", "key": "TAXON_KEY", "value": "1"},
        fmt="DWCA",
        media_base=MEDIA,
        real_columns=True,
        **kwargs,
    )
    return zipfile.ZipFile(dest)


def test_a_cached_archive_is_the_archive_with_its_own_metadata(world, tmp_path, monkeypatch) -> None:
    rows = np.arange(0, 3_000, 3)
    key = cache_key(SandboxConfig(occurrences=3_000, species=50), rows, media_base=MEDIA, real_columns=True)
    cache = ArchiveCache(tmp_path / "cache")
    plain = _write(world, rows, tmp_path / "plain.zip", 1)
    first = _write(world, rows, tmp_path / "first.zip", 1, cache=cache, cache_key=key)
    # the same entries, in the same order, with the same bytes as an archive written without a cache
    assert first.namelist() == plain.namelist()
    assert all(first.read(name) == plain.read(name) for name in plain.namelist())

    def render_again(*args, **kwargs):
        raise AssertionError("the data entries were rendered again")

    monkeypatch.setattr(dwca_module, "_write_dwca_data", render_again)
    second = _write(world, rows, tmp_path / "second.zip", 2, cache=cache, cache_key=key)
    assert second.namelist() == plain.namelist()
    assert all(second.read(name) == plain.read(name) for name in DATA)
    assert b"10.15468/dl.cache2" in second.read("metadata.xml")
    assert b"10.15468/dl.cache1" not in second.read("metadata.xml") + second.read("citations.txt")
    assert second.testzip() is None


def test_the_key_names_everything_the_bytes_depend_on() -> None:
    rows = np.arange(100)
    config = SandboxConfig(occurrences=3_000, species=50)
    key = cache_key(config, rows, media_base=MEDIA, real_columns=True)
    assert key == cache_key(
        SandboxConfig(occurrences=3_000, species=50, password="other", download_seconds=(9, 9)),
        rows.copy(),
        media_base=MEDIA,
        real_columns=True,
    )  # what does not shape the records does not matter
    others = {
        cache_key(
            SandboxConfig(occurrences=3_000, species=50, seed=7), rows, media_base=MEDIA, real_columns=True
        ),
        cache_key(SandboxConfig(occurrences=4_000, species=50), rows, media_base=MEDIA, real_columns=True),
        cache_key(config, rows[1:], media_base=MEDIA, real_columns=True),
        cache_key(config, rows, media_base="http://127.0.0.1:1", real_columns=True),
        cache_key(config, rows, media_base=MEDIA, real_columns=False),
        cache_key(
            SandboxConfig(occurrences=3_000, species=50, media_fault_rate=0.5),
            rows,
            media_base=MEDIA,
            real_columns=True,
        ),
    }
    assert key not in others and len(others) == 6


def test_a_cancelled_build_leaves_nothing_behind(world, tmp_path) -> None:
    cache = ArchiveCache(tmp_path / "cache")
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    rows = np.arange(3_000)
    with pytest.raises(Stopped):
        _write(world, rows, tmp_path / "a.zip", 1, cache=cache, cache_key="k", should_stop=stop)
    assert list((tmp_path / "cache").iterdir()) == []
    assert not any(tmp_path.glob("a.zip*"))


def test_only_the_newest_entries_are_kept(tmp_path) -> None:
    cache = ArchiveCache(tmp_path)

    def write(zf: zipfile.ZipFile) -> np.ndarray:
        zf.writestr("occurrence.txt", "gbifID\n")
        return np.zeros(3, dtype=np.int64)

    for n in range(KEEP + 2):
        time.sleep(0.02)  # file times are coarse (a few ms): keep the order of use clear
        path, counts = cache.data_entries(f"k{n}", write)
        assert path.is_file() and counts.tolist() == [0, 0, 0]
    assert sorted(p.stem for p in tmp_path.glob("*.zip")) == [f"k{n}" for n in range(2, KEEP + 2)]
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == [f"k{n}" for n in range(2, KEEP + 2)]
