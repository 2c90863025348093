"""Hostile values from archives, end to end through export_training_set: nothing live, nothing raw.

Markdown files are rendered with a CommonMark renderer (markdown-it-py, GFM tables on, raw HTML
allowed as GitHub allows it) and the HTML they give, like datacard.html, is parsed: no tag, attribute
or link may come from data; the hostile text must still be there, as text.
"""

from __future__ import annotations

import json
import re
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from markdown_it import MarkdownIt

from gbifdl_assets.export.escape import clean_text, http_url, md_code, md_link, md_text
from gbifdl_assets.export.layout import ExportError, export_training_set
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.unit.test_export_writers import build_inputs

XSS_URL = "https://x.org/?q=<img src=x onerror=alert(1)>"
JS_LINK = "[x](javascript:alert(1))"
SPECIALS = "Ann *bold* _it_ [a] <b>x</b> | pipe `code` ``two``"
CONTROL = "Nul\x00Bell\x07Esc\x1b[31mRed\u202eLtr\nNewline\rCr\x85Nel\ufeffBom"
HOSTILE_NAME = "<script>alert(1)</script> Panthera `leo`"
HOSTILE_DATASET = "<img src=x onerror=alert(2)>"
CITATION = {
    "sources": [
        {
            "type": "download",
            "doi": "10.15468/dl.<img src=x onerror=alert(3)>",
            "citation": "GBIF.org (2026) [x](javascript:alert(4)) <script>alert(5)</script>\x00",
            "created": "2026-01-02",
        },
        {"type": "search", "params": {"q": "`a` <b>|\x00"}, "date": "2026-02-03"},
    ]
}
# text a data value must never produce in the rendered HTML
# (the data's "<b>x</b>", "*bold*" and "_it_" would give b and em; the files use neither themselves)
FORBIDDEN_TAGS = {"script", "iframe", "object", "embed", "svg", "form", "input", "b", "em"}
CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    p.close()
    return p


def _render(md: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(md)


def _assert_inert(html: str, where: str, *, own_images: set[str] = frozenset()) -> str:
    """No tag, attribute or link from data; returns the visible text."""
    p = _parse(html)
    for tag, attrs in p.tags:
        assert tag not in FORBIDDEN_TAGS, (where, tag, attrs)
        for name, value in attrs.items():
            assert not name.startswith("on"), (where, tag, name)
            if name == "href":
                assert value and (
                    value.startswith(("https://", "http://"))
                    or re.fullmatch(r"[A-Za-z]+\.(md|csv|json)", value)
                ), (where, value)
                assert "<" not in value and " " not in value and '"' not in value, (where, value)
            if name == "src":
                assert value in own_images, (where, value)
        if tag == "img":
            assert attrs.get("src") in own_images, (where, attrs)
    return "".join(p.text)


def _hostile_inputs(tmp_path: Path) -> dict:
    inputs = build_inputs(tmp_path)
    man = inputs["manifest"]
    n = man.num_rows
    creators = [JS_LINK if i % 3 == 0 else (SPECIALS if i % 3 == 1 else CONTROL) for i in range(n)]
    holders = [CONTROL if i % 2 else SPECIALS for i in range(n)]
    refs = [XSS_URL if i % 2 else "javascript:alert(9)" for i in range(n)]
    urls = ["javascript:alert(1)" if i % 2 else XSS_URL for i in range(n)]
    names = [
        HOSTILE_NAME if lab == 5219404 else nm
        for lab, nm in zip(man["label"].to_pylist(), man["label_name"].to_pylist(), strict=True)
    ]
    for col, values in (
        ("creator", creators),
        ("rightsHolder", holders),
        ("references", refs),
        ("url", urls),
        ("label_name", names),
        ("datasetKey", [HOSTILE_DATASET] * n),
    ):
        i = man.schema.get_field_index(col)
        man = man.set_column(i, man.schema.field(i), pa.array(values, man.schema.field(i).type))
    inputs["manifest"] = man
    return inputs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    inputs = _hostile_inputs(tmp)
    out = tmp / "export"
    summary = export_training_set(
        inputs["manifest"],
        inputs["ledger"],
        inputs["store"],
        LocalStorage(out),
        training_set="cats`<b>x</b>\x00",
        citation=CITATION,
        coordinates=inputs["coordinates"],
        shard_size=8,
        provenance={
            "spec_name": "<script>alert(6)</script>\x00",
            "snapshot_id": JS_LINK,
            "url": "javascript:alert(7)",
            "note\x07": {"a": "<b>x</b>"},
        },
    )
    return inputs, out, summary


def test_markdown_files_render_inert(hostile):
    _, out, _ = hostile
    for name in ("CREDITS.md", "CITATION.md", "datacard.md"):
        md = (out / name).read_text(encoding="utf-8")
        text = _assert_inert(_render(md), name, own_images={"datacard/classes.png", "datacard/map.png"})
        attrs = [str(v) for _, a in _parse(_render(md)).tags for v in a.values()]
        assert not [v for v in attrs if "alert(" in v or "javascript" in v.lower()], (name, attrs)
        if name == "CREDITS.md":
            # the values are still there, as text
            assert JS_LINK in text and "Ann *bold* _it_ [a] <b>x</b> | pipe `code` ``two``" in text
            assert HOSTILE_NAME in text
            assert "NulBellEsc[31mRedLtr Newline Cr NelBom" in text
        if name == "CITATION.md":
            assert "[x](javascript:alert(4)) <script>alert(5)</script>" in text
            assert HOSTILE_DATASET in text and '"`a` <b>|"' in text
        if name == "datacard.md":
            assert HOSTILE_NAME in text and "cats`<b>x</b>" in text
            assert "<script>alert(6)</script>" in text and JS_LINK in text and "javascript:alert(7)" in text


def test_credits_links_only_http(hostile):
    _, out, _ = hostile
    html = _render((out / "CREDITS.md").read_text(encoding="utf-8"))
    hrefs = [a.get("href") for t, a in _parse(html).tags if t == "a"]
    # the XSS URL is a link, percent-encoded; javascript: never is
    assert "https://x.org/?q=%3Cimg%20src=x%20onerror=alert%281%29%3E" in hrefs
    assert not [h for h in hrefs if "javascript" in h]
    # a javascript: "references" falls back to the GBIF occurrence page
    assert any(h.startswith("https://www.gbif.org/occurrence/") for h in hrefs)


def test_datacard_html_inert(hostile):
    _, out, _ = hostile
    page = (out / "datacard.html").read_text(encoding="utf-8")
    text = _assert_inert(page, "datacard.html", own_images={"datacard/classes.png", "datacard/map.png"})
    assert HOSTILE_NAME in text and "cats`<b>x</b>" in text


def _text_files(out: Path) -> dict[str, str]:
    files = {}
    for p in out.rglob("*"):
        rel = p.relative_to(out).as_posix()
        if p.suffix in {".md", ".html", ".csv", ".json", ".jsonl"}:
            files[rel] = p.read_text(encoding="utf-8")
        elif p.suffix == ".tar":
            with tarfile.open(p) as tar:
                for m in tar.getmembers():
                    if m.name.endswith((".json", ".cls")):
                        files[f"{rel}:{m.name}"] = tar.extractfile(m).read().decode("utf-8")
    return files


def test_no_control_characters_in_any_written_file(hostile):
    _, out, _ = hostile
    files = _text_files(out)
    assert any(k.startswith("webdataset/") for k in files) and "credits.csv" in files
    for name, text in files.items():
        assert not CONTROL_RE.search(text), (name, CONTROL_RE.search(text))
        # JSON escapes would hide a control character: decode and look again
        if name.endswith(".json"):
            assert not CONTROL_RE.search(json.dumps(json.loads(text), ensure_ascii=False)), name
        assert "\\u0000" not in text and "\\u0007" not in text, name
    manifest = pq.read_table(out / "manifest.parquet")
    for f in manifest.schema:
        if pa.types.is_string(f.type):
            assert not pc.any(pc.match_substring_regex(manifest[f.name], r"[\x00-\x08\x{202e}]")).as_py(), (
                f.name
            )
    # the cleaned value is the same text without the controls (newline, CR and NEL become spaces)
    assert "NulBellEsc[31mRedLtr Newline Cr NelBom" in set(manifest["rightsHolder"].to_pylist())


def test_webdataset_metadata_keeps_text_without_controls(hostile):
    _, out, _ = hostile
    docs = []
    for shard in sorted((out / "webdataset").glob("*.tar")):
        with tarfile.open(shard) as tar:
            docs += [
                json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")
            ]
    assert docs and {d["creator"] for d in docs} >= {JS_LINK, "NulBellEsc[31mRedLtr Newline Cr NelBom"}


def test_bad_content_key_is_refused(tmp_path):
    inputs = build_inputs(tmp_path)
    led, man = inputs["ledger"], inputs["manifest"]
    ck = man["content_key"][0].as_py()
    bad = "../" + ck[3:]
    i = man.schema.get_field_index("content_key")
    man = man.set_column(i, man.schema.field(i), pa.array([bad] + man["content_key"].to_pylist()[1:]))
    j = led.schema.get_field_index("content_key")
    led = led.set_column(
        j, led.schema.field(j), pa.array([bad if v == ck else v for v in led["content_key"].to_pylist()])
    )
    with pytest.raises(ExportError, match="cannot name a file"):
        export_training_set(man, led, inputs["store"], LocalStorage(tmp_path / "o"), training_set="t")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\x00b", "ab"),
        ("a\tb\nc\r\nd", "a b c  d"),
        ("\u202egnp.exe", "gnp.exe"),
        (None, ""),
        (12, "12"),
    ],
)
def test_clean_text(value, expected):
    assert clean_text(value) == expected


def test_helpers():
    assert md_link("x", "javascript:alert(1)") == "x"
    assert md_link("x", "data:text/html,<b>") == "x"
    assert md_link("x", "//evil.org/a") == "x"
    assert md_link("r", "HTTPS://a.org/b c(d)") == "[r](HTTPS://a.org/b%20c%28d%29)"
    assert http_url(" https://a.org/x|y ") == "https://a.org/x%7Cy"
    assert http_url("ftp://a.org") is None
    assert md_text("1. first") == "1\\. first" and md_text("- item") == "\\- item"
    assert md_text("a&lt;b") == "a&amp;lt;b"  # an entity in data stays text
    assert md_code("a``b") == "```a``b```" and md_code("`x") == "`` `x ``"
    rendered = _render(f"{md_text(SPECIALS)}\n")
    assert _parse(rendered).tags == [("p", {})] and "".join(_parse(rendered).text).strip() == SPECIALS
