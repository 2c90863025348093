"""How an export shows a record's licence: its human label and its deed URL.

Credits and the data card print the licence of every exported image. Records can carry a licence
string that GBIF's list does not know (older data, typos in a publisher's feed); an export must
still be written, so these helpers never raise: an unknown licence is shown as it was given.
"""

from __future__ import annotations

from gbifdl_assets.gbif.licenses import license_label, license_url

__all__ = ["license_label_or_code", "license_url_or_blank"]


def license_label_or_code(lic: str | None) -> str:
    """The licence's label ("CC BY 4.0"), or the licence string itself when it is not a known one."""
    try:
        return license_label(lic or "UNKNOWN")
    except ValueError:
        return lic or "Unknown licence"


def license_url_or_blank(lic: str | None) -> str:
    """The licence's deed URL, or "" when there is none or the licence is not a known one."""
    try:
        return license_url(lic or "UNKNOWN") or ""
    except ValueError:
        return ""
