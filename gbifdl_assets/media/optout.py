"""Opt-out signals a media host sends in its answer headers, read before the body is downloaded.

* ``X-Robots-Tag`` (Google's and Bing's header form of the robots meta tag; img2dataset and
  others honour it for AI training sets): the directives ``noai``, ``noimageai``, ``noindex``,
  ``noimageindex`` and ``none`` (= noindex, nofollow) mean "do not use this for AI / do not index
  it". A directive may be scoped to one robot (``otherbot: noindex``); it then applies only when
  that robot is us (our User-Agent's product token, e.g. ``gbifdl-assets``) or ``*``.
* ``tdm-reservation: 1`` (W3C TDM Reservation Protocol): the rights holder reserves text and data
  mining rights; ``0`` says they are not reserved.

img2dataset reads these headers only after downloading the body; here the connection
(:mod:`.http1`) checks them as soon as the headers are in and closes instead of reading the image.
The ledger records such images as ``opted_out`` with the reason (``x_robots_tag`` or
``tdm_reservation``) and the header in its error column.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["OPT_OUT_DIRECTIVES", "OPT_OUT_REASONS", "header_opt_out", "robots_token"]

OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai", "noindex", "noimageindex", "none"})
#: ledger reasons of status ``opted_out``
OPT_OUT_REASONS = ("robots_txt", "x_robots_tag", "tdm_reservation")
#: X-Robots-Tag directives that carry a value after a colon (so the part before it is no robot name)
_VALUED = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})


def robots_token(user_agent: str) -> str:
    """The product token robots rules name us by: ``gbifdl-assets`` of ``gbifdl-assets/0.1 (…)``."""
    token = user_agent.strip().split("/", 1)[0].split(" ", 1)[0].strip().lower()
    return token or "*"


def _x_robots_opt_out(value: str, token: str) -> list[str]:
    """The opt-out directives of an X-Robots-Tag value (one header per line) that apply to ``token``."""
    found: list[str] = []
    for line in value.splitlines():
        scope: str | None = None
        for part in line.split(","):
            part = part.strip().lower()
            if not part:
                continue
            name, colon, rest = part.partition(":")
            if colon and name.strip() not in _VALUED:
                scope = name.strip()  # "otherbot: noindex, nofollow": the rest of the line is theirs
                part = rest.strip()
            if scope is not None and scope not in (token, "*"):
                continue
            if part in OPT_OUT_DIRECTIVES:
                found.append(part)
    return found


def header_opt_out(headers: Mapping[str, str], token: str) -> tuple[str, str] | None:
    """(ledger reason, detail) when the answer's headers opt out of our use, else None."""
    tag = headers.get("x-robots-tag")
    if tag:
        found = _x_robots_opt_out(tag, token)
        if found:
            shown = tag.replace("\n", " | ")
            return (
                "x_robots_tag",
                f"X-Robots-Tag: {shown} ({', '.join(dict.fromkeys(found))}): the host opts out",
            )
    tdm = headers.get("tdm-reservation")
    if tdm is not None and tdm.strip() == "1":
        return "tdm_reservation", "tdm-reservation: 1: the rights holder reserves text and data mining"
    return None
