"""Image flags: what a user says about one image, with the JSON names the REST API speaks.

GBIF's annotation pilots asked for annotating a single image (a multimedia item of an occurrence);
GBIF has not built it. A flag here names the image by the occurrence and its media identifier (the
URL GBIF carries), and, when known, by the image's content: the sha256 of the downloaded bytes (the
ledger's ``content_sha256``) and a perceptual hash (hex). The hashes let a flag follow the same photo
under another URL or on another occurrence, and survive a refresh (gbifIDs and URLs may change; the
bytes do not).

Terms (:data:`~gbifdl_assets.annotations.vocabulary.FLAGS`): NOT_ORGANISM, WRONG_TAXON, DUPLICATE,
POOR_QUALITY. WRONG_TAXON is about the photo *under one taxon*: it carries the taxon it was flagged
under (``taxonKey``, the class the gallery showed it in), and drops copies only under that taxon; the
others are about the photo itself and drop it wherever it recurs (:mod:`.flag_matching`).

:func:`parse_flag_input` validates what a user sent (server-managed fields are ignored, as for rules);
:data:`FLAGS_TABLE_SCHEMA` is the compiled table the manifest stage reads.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from gbifdl_assets.annotations.model import RuleError, format_timestamp
from gbifdl_assets.annotations.vocabulary import FLAGS, normalize_flag

__all__ = [
    "FLAGS_TABLE_SCHEMA",
    "FLAG_INPUT_FIELDS",
    "MAX_COMMENT_CHARS",
    "MAX_IDENTIFIER_CHARS",
    "FlagInput",
    "ImageFlag",
    "parse_flag_input",
]

MAX_IDENTIFIER_CHARS = 2000
MAX_COMMENT_CHARS = 10_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: pHash/dHash (64 bits) to PDQ (256 bits), as hex
_PHASH = re.compile(r"^[0-9a-f]{16,64}$")
_INT64_MAX = 2**63 - 1
#: the fields a user sets (the rest is the server's)
FLAG_INPUT_FIELDS = ("gbifID", "mediaIdentifier", "contentSha256", "phash", "taxonKey", "flag", "comment")

#: one row per live flag, as the manifest stage reads it (compiled from the store)
FLAGS_TABLE_SCHEMA = pa.schema(
    [
        pa.field("flag_id", pa.int64(), nullable=False),
        pa.field("gbifID", pa.int64(), nullable=False),
        pa.field("media_identifier", pa.string(), nullable=False),
        pa.field("content_sha256", pa.string()),
        pa.field("phash", pa.string()),
        pa.field("taxon_key", pa.int64()),
        pa.field("flag", pa.string(), nullable=False),
        pa.field("support", pa.int32(), nullable=False),
        pa.field("contest", pa.int32(), nullable=False),
        pa.field("created_by", pa.string()),
    ]
)


@dataclass(frozen=True)
class FlagInput:
    """A validated flag as a user wrote it."""

    gbifID: int
    mediaIdentifier: str
    flag: str
    contentSha256: str | None = None
    phash: str | None = None
    taxonKey: int | None = None
    comment: str | None = None


@dataclass(frozen=True)
class ImageFlag:
    """A stored flag, with its votes (GBIF's rule conventions: ``supportedBy``/``contestedBy``)."""

    id: int
    gbifID: int
    mediaIdentifier: str
    contentSha256: str | None
    phash: str | None
    taxonKey: int | None
    flag: str
    comment: str | None
    supportedBy: list[str] = field(default_factory=list)
    contestedBy: list[str] = field(default_factory=list)
    created: dt.datetime | None = None
    createdBy: str | None = None
    deleted: dt.datetime | None = None
    deletedBy: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "gbifID": self.gbifID,
            "mediaIdentifier": self.mediaIdentifier,
            "contentSha256": self.contentSha256,
            "phash": self.phash,
            "taxonKey": self.taxonKey,
            "flag": self.flag,
            "comment": self.comment,
            "supportedBy": list(self.supportedBy),
            "contestedBy": list(self.contestedBy),
            "created": format_timestamp(self.created),
            "createdBy": self.createdBy,
            "deleted": format_timestamp(self.deleted),
            "deletedBy": self.deletedBy,
        }


def _positive_int(value: Any, name: str, problems: list[str], *, required: bool) -> int | None:
    if value is None:
        if required:
            problems.append(f"{name} is missing: give the occurrence's GBIF id (a whole number)")
        return None
    if isinstance(value, bool):
        problems.append(f"{name} must be a whole number, not {value!r}")
        return None
    try:
        number = int(str(value).strip()) if isinstance(value, str) else value
    except ValueError:
        number = None
    if not isinstance(number, int) or not 1 <= number <= _INT64_MAX:
        problems.append(f"{name}={str(value)[:40]!r} is not a positive whole number")
        return None
    return number


def _hex(value: Any, name: str, pattern: re.Pattern[str], what: str, problems: list[str]) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = value.strip().lower() if isinstance(value, str) else None
    if text is None or not pattern.match(text):
        problems.append(f"{name}={str(value)[:80]!r} is not {what}; leave it out when unknown")
        return None
    return text


def _identifier(value: Any, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(
            "mediaIdentifier is missing: give the image's URL as the occurrence's media item carries it"
        )
        return None
    text = value.strip()
    if len(text) > MAX_IDENTIFIER_CHARS:
        problems.append(f"mediaIdentifier has {len(text):,} characters; at most {MAX_IDENTIFIER_CHARS:,}")
        return None
    if not re.match(r"^https?://[^\s]+$", text, re.IGNORECASE):
        problems.append(f"mediaIdentifier {text[:80]!r} is not an http(s) URL without blanks")
        return None
    return text


def parse_flag_input(data: Mapping[str, Any]) -> FlagInput:
    """Validate a flag a user sent; one :class:`RuleError` lists every problem and its fix."""
    if not isinstance(data, Mapping):
        raise RuleError(f"image flag: expected an object with {', '.join(FLAG_INPUT_FIELDS)}")
    problems: list[str] = []
    gbif_id = _positive_int(data.get("gbifID"), "gbifID", problems, required=True)
    identifier = _identifier(data.get("mediaIdentifier"), problems)
    sha = _hex(data.get("contentSha256"), "contentSha256", _SHA256, "a sha256 (64 hex digits)", problems)
    phash = _hex(data.get("phash"), "phash", _PHASH, "a perceptual hash (16 to 64 hex digits)", problems)
    taxon = _positive_int(data.get("taxonKey"), "taxonKey", problems, required=False)
    flag = None
    try:
        flag = normalize_flag(data.get("flag"))
    except ValueError:
        shown = "missing" if data.get("flag") is None else f"{str(data.get('flag'))[:40]!r}"
        problems.append(f"flag is {shown}: use one of {', '.join(FLAGS)}")
    comment = data.get("comment")
    if comment is not None and not isinstance(comment, str):
        problems.append("comment must be text")
        comment = None
    elif isinstance(comment, str):
        comment = comment.strip() or None
        if comment and len(comment) > MAX_COMMENT_CHARS:
            problems.append(f"comment has {len(comment):,} characters; at most {MAX_COMMENT_CHARS:,}")
    if problems:
        raise RuleError("image flag: " + "; ".join(problems))
    assert gbif_id is not None and identifier is not None and flag is not None
    return FlagInput(gbif_id, identifier, flag, sha, phash, taxon, comment)
