"""The controlled annotation vocabulary: GBIF's default terms, in GBIF's spelling.

GBIF's annotation API (reference annotations.md §5) accepts the terms case-insensitively and, on
its ``dev`` branch, stores them as sent; we always store the upper-case spelling so that a filter
on ``"SUSPICIOUS"`` finds every suspicious rule, whatever case the author typed (GBIF bug §8.7).

The terms themselves live in :mod:`gbifdl_assets.vocabulary` (shared with the spec and the sandbox);
this module adds the normalisation the annotation code applies to them.
"""

from __future__ import annotations

from gbifdl_assets.vocabulary import (
    ANNOTATION_LABEL_DESCRIPTIONS,
    ANNOTATION_LABELS,
    IMAGE_FLAG_DESCRIPTIONS,
    IMAGE_FLAGS,
)

__all__ = ["DESCRIPTIONS", "FLAGS", "FLAG_DESCRIPTIONS", "LABELS", "normalize_flag", "normalize_label"]

#: Labels in GBIF's order (the order of its enum and of its default vocabulary).
LABELS: tuple[str, ...] = ANNOTATION_LABELS

#: One line per label, as GBIF's default vocabulary describes it.
DESCRIPTIONS: dict[str, str] = ANNOTATION_LABEL_DESCRIPTIONS

#: What a user can say about one image (GBIF has no image-level annotation; these terms are ours).
FLAGS: tuple[str, ...] = IMAGE_FLAGS
FLAG_DESCRIPTIONS: dict[str, str] = IMAGE_FLAG_DESCRIPTIONS

_BY_UPPER = {label: label for label in LABELS}


def normalize_label(text: object) -> str:
    """Return the canonical (upper-case) label for ``text``; ``ValueError`` if it is not a label.

    Accepts any case and surrounding whitespace ("suspicious", " Managed ").
    """
    if isinstance(text, str):
        label = _BY_UPPER.get(text.strip().upper())
        if label is not None:
            return label
    raise ValueError(f"unknown annotation label {text!r}: use one of {', '.join(LABELS)} (any case)")


def normalize_flag(text: object) -> str:
    """The canonical image flag for ``text`` (any case, ``-`` or blanks for ``_``); ``ValueError`` if none."""
    if isinstance(text, str):
        flag = text.strip().upper().replace("-", "_").replace(" ", "_")
        if flag in FLAGS:
            return flag
    raise ValueError(f"unknown image flag {text!r}: use one of {', '.join(FLAGS)} (any case)")
