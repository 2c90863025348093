"""meta.xml: the DwC-A descriptor (which files, which columns by term URI) and the archive's own metadata.

Also the vocabulary the reader recognises (Darwin Core and GBIF namespaces, the Occurrence core and
Multimedia extension row types).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from gbifdl_assets.gbif.dwca.errors import DwcaError

# ---------------------------------------------------------------------------------------------------
# vocabulary
# ---------------------------------------------------------------------------------------------------
DWC = "http://rs.tdwg.org/dwc/terms/"
GBIF = "http://rs.gbif.org/terms/1.0/"
OCCURRENCE_ROW_TYPE = DWC + "Occurrence"
MULTIMEDIA_ROW_TYPES = (GBIF + "Multimedia", "http://rs.tdwg.org/ac/terms/Multimedia")

MAX_XML_BYTES = 32 << 20  # meta.xml and metadata.xml larger than this are not descriptors
#: a GBIF download key (``0000154-150116162929234``) inside a file name, title or identifier
DOWNLOAD_KEY = re.compile(r"(?<!\d)(\d{7}-\d{15})(?!\d)")


@dataclass(frozen=True)
class TermField:
    """One ``<field>`` of meta.xml: a term at a column ``index`` and/or a constant ``default``."""

    term: str  # full URI
    index: int | None
    default: str | None = None

    @property
    def name(self) -> str:
        return short_term(self.term)


@dataclass(frozen=True)
class TextFile:
    """A core or extension data file as meta.xml describes it."""

    row_type: str
    locations: tuple[str, ...]
    is_core: bool
    fields: tuple[TermField, ...]
    id_index: int | None = None
    encoding: str = "UTF-8"
    delimiter: str = "\t"
    quote_char: str | None = None
    header_lines: int = 0

    @property
    def row_type_name(self) -> str:
        return short_term(self.row_type)

    @property
    def location(self) -> str:
        return self.locations[0]

    def field_by_term(self, term: str) -> TermField | None:
        for f in self.fields:
            if f.term == term:
                return f
        return None

    def field_by_name(self, name: str) -> TermField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


def short_term(uri: str) -> str:
    """``http://rs.tdwg.org/dwc/terms/scientificName`` -> ``scientificName``."""
    return re.split(r"[/#:]", uri.rstrip("/#"))[-1]


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _unescape_attr(value: str | None, default: str) -> str:
    if value is None:
        return default
    return value.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r")


def parse_meta_xml(data: bytes, archive: str) -> tuple[TextFile, list[TextFile], str | None]:
    """(core, extensions, metadata file name) of a meta.xml; DwcaError naming the problem."""
    if len(data) > MAX_XML_BYTES:
        raise DwcaError(f"archive {archive}: meta.xml is {len(data)} bytes, too large to be a descriptor")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise DwcaError(
            f"archive {archive}: meta.xml is not valid XML ({exc}); the archive is damaged"
        ) from None
    if local_name(root.tag) != "archive":
        raise DwcaError(f"archive {archive}: meta.xml has root <{local_name(root.tag)}>, not <archive>")
    core = None
    extensions = []
    for elem in root:
        kind = local_name(elem.tag)
        if kind not in ("core", "extension"):
            continue
        tf = _parse_file_element(elem, kind == "core", archive)
        if kind == "core":
            if core is not None:
                raise DwcaError(f"archive {archive}: meta.xml declares more than one <core>")
            core = tf
        else:
            extensions.append(tf)
    if core is None:
        raise DwcaError(f"archive {archive}: meta.xml declares no <core> file")
    return core, extensions, root.get("metadata")


def _parse_file_element(elem: ET.Element, is_core: bool, archive: str) -> TextFile:
    what = "core" if is_core else "extension"
    row_type = (elem.get("rowType") or "").strip()
    locations = tuple(
        (loc.text or "").strip()
        for files in elem
        if local_name(files.tag) == "files"
        for loc in files
        if local_name(loc.tag) == "location" and (loc.text or "").strip()
    )
    if not locations:
        raise DwcaError(f"archive {archive}: the meta.xml {what} {short_term(row_type) or ''} names no file")
    id_index = None
    fields = []
    for child in elem:
        tag = local_name(child.tag)
        if tag in ("id", "coreid") and child.get("index") is not None:
            id_index = _int_attr(child.get("index"), f"{what} <{tag}> index", archive)
        elif tag == "field":
            term = (child.get("term") or "").strip()
            if not term:
                continue
            index = child.get("index")
            fields.append(
                TermField(
                    term=term,
                    index=None if index is None else _int_attr(index, f"field {term} index", archive),
                    default=child.get("default"),
                )
            )
    delimiter = _unescape_attr(elem.get("fieldsTerminatedBy"), ",")
    if len(delimiter) != 1:
        raise DwcaError(
            f"archive {archive}: {locations[0]} uses the field separator {delimiter!r}; only "
            "single-character separators (GBIF uses a tab) are supported"
        )
    quote = _unescape_attr(elem.get("fieldsEnclosedBy"), '"')
    if len(quote) > 1:
        raise DwcaError(
            f"archive {archive}: {locations[0]} quotes fields with {quote!r}; expected one character"
        )
    return TextFile(
        row_type=row_type,
        locations=locations,
        is_core=is_core,
        fields=tuple(fields),
        id_index=id_index,
        encoding=(elem.get("encoding") or "UTF-8").strip(),
        delimiter=delimiter,
        quote_char=quote or None,
        header_lines=_int_attr(elem.get("ignoreHeaderLines") or "0", "ignoreHeaderLines", archive),
    )


def _int_attr(value: str | None, what: str, archive: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise DwcaError(f"archive {archive}: meta.xml {what} is {value!r}, not a number") from None
    if number < 0:
        raise DwcaError(f"archive {archive}: meta.xml {what} is negative ({number})")
    return number


@dataclass
class ArchiveMetadata:
    """What the archive says about itself (EML ``metadata.xml`` and ``citations.txt``)."""

    download_key: str | None = None
    doi: str | None = None
    title: str | None = None
    citation: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}
