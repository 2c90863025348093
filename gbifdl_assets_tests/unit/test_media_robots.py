"""robots.txt as RFC 9309 reads it, and the opt-out headers (media/robots.py, media/optout.py)."""

from __future__ import annotations

from gbifdl_assets.media.optout import header_opt_out, robots_token
from gbifdl_assets.media.robots import MAX_ROBOTS_BYTES, parse_robots, robots_ttl, rules_for_answer

TOKEN = "gbifdl-assets"

ROBOTS = """
# a typical museum server
User-agent: *
Disallow: /private/
Allow: /private/public-*.jpg$
Disallow: /*.tif$
Crawl-delay: 2

User-agent: GbifDL-Assets/2.0
User-agent: otherbot
Disallow: /no-ai/
Allow: /
"""


def test_our_group_wins_over_star_and_the_longest_rule_decides() -> None:
    ours = parse_robots(ROBOTS, TOKEN)
    assert not ours.allows("/no-ai/a.jpg") and ours.allows("/private/a.jpg")  # our group only
    assert ours.crawl_delay is None
    star = parse_robots(ROBOTS, "somebot")
    assert not star.allows("/private/a.jpg")
    assert star.allows("/private/public-1.jpg")  # the longer Allow wins
    assert not star.allows("/private/public-1.jpg?x=1")  # "$" anchors the end
    assert not star.allows("/scans/big.tif") and star.allows("/scans/big.tiff")
    assert star.allows("/robots.txt") and star.crawl_delay == 2.0
    allowed, rule = star.verdict("/private/x")
    assert (allowed, rule) == (False, "Disallow: /private/")


def test_ties_go_to_allow_and_percent_escapes_compare_equal() -> None:
    rules = parse_robots("User-agent: *\nDisallow: /a\nAllow: /a\nDisallow: /caf%C3%A9/\n", TOKEN)
    assert rules.allows("/a/b")
    assert not rules.allows("/café/x".replace("é", "%c3%a9"))
    assert not rules.allows("/caf%C3%A9/x")


def test_malformed_lines_are_skipped_without_losing_the_rest() -> None:
    text = "Disallow: /before-any-agent\ngarbage line\nUser-agent *\nUser-agent: *\nDisallow private/\nDisallow: /x\nCrawl-delay: soon\n"
    rules = parse_robots(text, TOKEN)
    assert not rules.allows("/x/1") and rules.allows("/before-any-agent")
    assert "malformed" in rules.note


def test_what_a_robots_answer_means() -> None:
    assert rules_for_answer(404, b"", None, TOKEN).allows("/anything")  # missing: everything allowed
    assert rules_for_answer(403, b"", None, TOKEN).allows("/anything")
    assert rules_for_answer(503, b"", None, TOKEN) is None  # unreachable: RFC says disallow
    assert rules_for_answer(429, b"", None, TOKEN) is None
    html = rules_for_answer(200, b"<!DOCTYPE html><html>Welcome</html>", "text/html", TOKEN)
    assert html.allows("/x") and "HTML" in html.note
    binary = rules_for_answer(200, b"\x89PNG\r\n\x1a\n\x00\x00", "image/png", TOKEN)
    assert binary.allows("/x") and "binary" in binary.note
    huge = (b"# filler\n" * (MAX_ROBOTS_BYTES // 9))[:MAX_ROBOTS_BYTES] + b"User-agent: *\nDisallow: /\n"
    cut = rules_for_answer(200, huge[:MAX_ROBOTS_BYTES], "text/plain", TOKEN, truncated=True)
    assert cut.allows("/x") and "only the first part" in cut.note  # rules past 500 KiB are not read
    bom = rules_for_answer(200, "\ufeffUser-agent: *\nDisallow: /p\n".encode(), "text/plain", TOKEN)
    assert not bom.allows("/p")


def test_robots_expiry() -> None:
    assert robots_ttl(None) == 86400
    assert robots_ttl("public, max-age=60") == 3600
    assert robots_ttl("max-age=7200") == 7200
    assert robots_ttl("max-age=9999999") == 86400


def test_opt_out_headers() -> None:
    assert robots_token("gbifdl-assets/0.1 (contact)") == "gbifdl-assets"
    assert header_opt_out({"x-robots-tag": "noai"}, TOKEN)[0] == "x_robots_tag"
    assert header_opt_out({"x-robots-tag": "noindex, nofollow"}, TOKEN)[0] == "x_robots_tag"
    assert header_opt_out({"x-robots-tag": "none"}, TOKEN)[0] == "x_robots_tag"
    assert header_opt_out({"x-robots-tag": "NoImageAI"}, TOKEN)[0] == "x_robots_tag"
    assert header_opt_out({"x-robots-tag": "otherbot: noindex, noai"}, TOKEN) is None  # not us
    assert (
        header_opt_out({"x-robots-tag": "otherbot: noindex\ngbifdl-assets: noimageindex"}, TOKEN) is not None
    )
    assert header_opt_out({"x-robots-tag": "unavailable_after: 25 Jun 2030 15:00:00 PST"}, TOKEN) is None
    assert header_opt_out({"x-robots-tag": "max-image-preview: large, nofollow"}, TOKEN) is None
    reason, detail = header_opt_out({"tdm-reservation": "1"}, TOKEN)
    assert reason == "tdm_reservation" and "tdm-reservation: 1" in detail
    assert header_opt_out({"tdm-reservation": "0"}, TOKEN) is None
    assert header_opt_out({}, TOKEN) is None
