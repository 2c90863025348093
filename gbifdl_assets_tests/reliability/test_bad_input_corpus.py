"""The checked-in bad-input corpus (corpus/cases.yaml): each case ends in its one clear message.

Specs go through ``load_spec`` (and one through the code location's spec catalogue in a Dagster
run), archives through ``write_snapshot_from_dwca`` (what occurrence_snapshot runs), media and URLs
through ``image_store`` materializations, whose ledger must record the failure and store nothing.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from gbifdl_assets.defs.resources import ImageFetchResource
from gbifdl_assets.gbif.dwca import DwcaError
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.occurrences.snapshots import latest_snapshot, write_snapshot_from_dwca
from gbifdl_assets.pipeline.balanced_manifest import latest_manifest_key
from gbifdl_assets.pipeline.image_shards import shard_of
from gbifdl_assets.specs import SpecError, load_spec
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets.storage.layout import ledger_name
from gbifdl_assets_tests.reliability.corpus.make_cases import generate
from gbifdl_assets_tests.reliability.project import image_partition

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())


def _case_id(case: dict) -> str:
    return case.get("file") or case.get("generated") or case.get("url")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    generate(out)
    return out


def _path(case: dict, generated: Path) -> Path:
    return CORPUS / case["file"] if "file" in case else generated / case["generated"]


def test_generated_cases_are_deterministic_and_small(generated: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again")
    assert sorted(p.name for p in again) == sorted(p.name for p in generated.iterdir())
    for path in again:
        assert path.read_bytes() == (generated / path.name).read_bytes(), path.name
        assert path.stat().st_size < 300_000, path.name
    named = {c["generated"] for group in CASES.values() for c in group if "generated" in c}
    assert named == {p.name for p in again}, "cases.yaml and make_cases.py disagree"
    checked_in = {c["file"] for group in CASES.values() for c in group if "file" in c}
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.parent != CORPUS and p.is_file()}
    assert checked_in == {p for p in on_disk if "__pycache__" not in p}, "a corpus file has no case"


@pytest.mark.parametrize("case", CASES["specs"], ids=_case_id)
def test_bad_spec(case: dict, generated: Path) -> None:
    path = _path(case, generated)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert case["expect"] in message
    assert str(path) in message  # names the input
    assert "pydantic" not in message.lower() and "Traceback" not in message


def test_a_bad_spec_fails_its_run_with_the_same_message(project, generated: Path) -> None:
    case = next(c for c in CASES["specs"] if c.get("generated") == "wkt-too-many-vertices.yaml")
    (project.root / "specs" / "wkt-too-many-vertices.yaml").write_bytes(_path(case, generated).read_bytes())
    project.add_partition("wkt-too-many-vertices")
    result = project.materialize(["species_list"], "wkt-too-many-vertices", raise_on_error=False)
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "No valid spec named 'wkt-too-many-vertices'" in message and case["expect"] in message


@pytest.mark.parametrize("case", CASES["archives"], ids=_case_id)
def test_bad_archive(case: dict, generated: Path, tmp_path: Path) -> None:
    archive = _path(case, generated)
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(DwcaError) as err:
        write_snapshot_from_dwca(archive, storage, "t")
    assert case["expect"] in str(err.value) and archive.name in str(err.value)
    assert latest_snapshot(storage, "t") is None
    leftovers = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert leftovers == [], "a refused archive left files behind"
    assert not (tmp_path / "occurrence.txt").exists() and not (tmp_path.parent / "occurrence.txt").exists()


# ----------------------------------------------------------------------------------- media and URLs
class _Files(BaseHTTPRequestHandler):
    files: dict[str, tuple[bytes, str]] = {}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body, content_type = self.files.get(self.path, (b"not found", "text/plain"))
        self.send_response(200 if self.path in self.files else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def media_server(generated: Path):
    files = {
        f"/{Path(_case_id(c)).name}": (_path(c, generated).read_bytes(), c["content_type"])
        for c in CASES["media"]
    }
    handler = type("CorpusFiles", (_Files,), {"files": files})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _replace_manifest(
    project, training_set: str, manifest: pa.Table, urls: list[str]
) -> tuple[str, pa.Table]:
    """The latest manifest becomes the first rows of one shard of ``manifest``, pointed at ``urls``."""
    store = project.storage()
    key = latest_manifest_key(store, training_set)
    shards = shard_of(manifest.column("label"))
    shard = Counter(shards.to_pylist()).most_common(1)[0][0]
    rows = manifest.filter(pc.equal(shards, shard)).slice(0, len(urls))
    assert rows.num_rows == len(urls)
    rows = rows.set_column(
        rows.schema.get_field_index("url"), "url", pa.array(urls, rows.schema.field("url").type)
    )
    content = pa.array(
        [hashlib.sha256(u.encode()).hexdigest() for u in urls], rows.schema.field("content_key").type
    )
    rows = rows.set_column(rows.schema.get_field_index("content_key"), "content_key", content)
    store.write_parquet(key, rows)
    return shard, rows


def _materialize_shard(project, training_set: str, shard: str, image_fetch: ImageFetchResource) -> dict:
    with project.instance() as instance:
        import dagster as dg

        from gbifdl_assets_tests.reliability.project import all_assets

        result = dg.materialize(
            all_assets(),
            selection=["image_store"],
            partition_key=image_partition(training_set, shard),
            instance=instance,
            resources={**project.resources(), "image_fetch": image_fetch},
        )
    assert result.success  # bad images are failed ledger rows, not a failed run
    ledger = load_ledger(project.storage(), ledger_name(training_set, shard))
    return {row["url"]: row for row in ledger.to_pylist()}


@pytest.mark.timeout(120)
def test_bad_media_and_refused_urls_through_image_store(project, media_server) -> None:
    project.write_spec(
        "corpus-media",
        "taxa: [Pieris rapae]\nsource: search\nbalancing: {max_per_class: 10, min_per_class: 1}\n"
        "licenses: [CC0, PDM, CC-BY, CC-BY-SA, CC-BY-NC, CC-BY-NC-SA]\n",
    )
    project.add_partition("corpus-media")
    project.upstream("corpus-media")
    store = project.storage()
    manifest = store.read_parquet(latest_manifest_key(store, "corpus-media"))

    # 1. bad bodies from a loopback server (loopback allowed, as for the sandbox)
    media_urls = [f"{media_server}/{Path(_case_id(c)).name}" for c in CASES["media"]]
    shard, _ = _replace_manifest(project, "corpus-media", manifest, media_urls)
    ledger = _materialize_shard(project, "corpus-media", shard, ImageFetchResource(allow_loopback=True))
    for case, url in zip(CASES["media"], media_urls, strict=True):
        row = ledger[url]
        assert (row["status"], row["reason"], row["stored"]) == ("failed", case["reason"], False), row
        assert case["expect"] in row["error"], row["error"]
    assert list(store.list("images/")) == []

    # 2. internal addresses with the code location's defaults: refused before any connection
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    urls = [c["url"].format(port=listener.getsockname()[1]) for c in CASES["urls"]]
    try:
        shard, _ = _replace_manifest(project, "corpus-media", manifest, urls)
        ledger = _materialize_shard(project, "corpus-media", shard, ImageFetchResource())
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected to the loopback port behind "localhost"
    finally:
        listener.close()
    for case, url in zip(CASES["urls"], urls, strict=True):
        row = ledger[url]
        assert (row["status"], row["reason"], row["attempts"]) == ("failed", case["reason"], 1), row
        assert case["expect"] in row["error"], row["error"]
    assert list(store.list("images/")) == []
