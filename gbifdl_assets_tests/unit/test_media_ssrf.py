"""SSRF guard: address classification, URL checks and the resolver filter (no network)."""

from __future__ import annotations

import ipaddress

import pytest

from gbifdl_assets.media.ssrf import (
    AddressPolicy,
    BadUrl,
    BlockedAddress,
    admitted_addresses,
    check_ip,
    check_url,
    classify,
    literal_ip,
    resolve_checked,
)

DEFAULT = AddressPolicy()
LOOPBACK_OK = AddressPolicy(allow_loopback=True)
PRIVATE_OK = AddressPolicy(allow_private=True)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.216.34", "public"),
        ("2606:4700:4700::1111", "public"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # carrier-grade NAT
        ("fd00::1", "private"),  # unique local
        ("169.254.169.254", "link_local"),  # cloud metadata service
        ("fe80::1", "link_local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link_local"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:93.184.216.34", "public"),
        ("::127.0.0.1", "loopback"),  # deprecated IPv4-compatible
        ("2002:a9fe:a9fe::1", "link_local"),  # 6to4 wrapping 169.254.169.254
        ("2002:5db8:d822::1", "public"),  # 6to4 wrapping a public address
    ],
)
def test_classify(address: str, kind: str) -> None:
    assert classify(ipaddress.ip_address(address)) == kind


def test_policy_switches_admit_only_their_class() -> None:
    assert check_ip("127.0.0.1", DEFAULT) and "allow_loopback" in check_ip("127.0.0.1", DEFAULT)
    assert check_ip("127.0.0.1", LOOPBACK_OK) is None
    assert check_ip("::ffff:127.0.0.1", LOOPBACK_OK) is None
    assert check_ip("10.0.0.1", LOOPBACK_OK) is not None
    assert check_ip("10.0.0.1", PRIVATE_OK) is None
    assert check_ip("127.0.0.1", PRIVATE_OK) is not None
    everything = AddressPolicy(allow_loopback=True, allow_private=True)
    # never admitted, whatever the switches: metadata service, multicast, unspecified, reserved
    for address in ("169.254.169.254", "fe80::1", "224.0.0.1", "0.0.0.0", "240.0.0.1"):
        assert check_ip(address, everything) is not None, address
    assert check_ip("93.184.216.34", DEFAULT) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/image.jpg",
        "http://127.0.0.1:8080/x.jpg",
        "http://[::1]/x.jpg",
        "http://[::ffff:127.0.0.1]/x.jpg",
        "http://[fe80::1]/x.jpg",
        "https://0.0.0.0/x.jpg",
        "http://[fd12:3456::1]/x.jpg",
    ],
)
def test_check_url_refuses_ip_literals(url: str) -> None:
    with pytest.raises(BlockedAddress) as err:
        check_url(url, DEFAULT)
    assert err.value.reason == "blocked_address"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x.jpg",
        "file:///etc/passwd",
        "gopher://x/",
        "//example.org/x",
        "http:///x.jpg",
        "x.jpg",
    ],
)
def test_check_url_refuses_other_schemes_and_hostless(url: str) -> None:
    with pytest.raises(BadUrl):
        check_url(url, DEFAULT)


def test_check_url_returns_the_host_key() -> None:
    assert check_url("https://Images.Example.org/a.jpg", DEFAULT) == "images.example.org"
    assert check_url("http://example.org:8080/a.jpg", DEFAULT) == "example.org:8080"
    assert check_url("http://127.0.0.1:9/a.jpg", LOOPBACK_OK) == "127.0.0.1:9"
    # host names are not resolved here (the resolver checks them)
    assert check_url("http://localhost/a.jpg", DEFAULT) == "localhost"


def test_resolve_checked_blocks_names_that_resolve_inside() -> None:
    with pytest.raises(BlockedAddress, match="loopback"):
        resolve_checked("localhost", 80, DEFAULT)
    # a decimal IPv4 spelling is resolved by getaddrinfo, so it cannot sneak past as a "name"
    with pytest.raises(BlockedAddress):
        resolve_checked("2130706433", 80, DEFAULT)
    assert set(resolve_checked("localhost", 80, LOOPBACK_OK)) <= {"127.0.0.1", "::1"}


def test_admitted_addresses_keeps_only_what_the_policy_admits() -> None:
    """A name answering with inside and outside addresses (DNS rebinding) keeps only the public one."""
    mixed = ["10.0.0.7", "93.184.216.34", "169.254.169.254"]
    assert admitted_addresses(mixed, "rebinding.example", DEFAULT) == ["93.184.216.34"]
    with pytest.raises(BlockedAddress, match="link-local"):
        admitted_addresses(["169.254.169.254"], "metadata.example", DEFAULT)
    with pytest.raises(BlockedAddress, match="link-local"):  # allow_private never admits link-local
        admitted_addresses(["169.254.169.254", "fe80::1"], "metadata.example", PRIVATE_OK)
    assert admitted_addresses(["10.0.0.7", "127.0.0.1"], "mirror.lan", PRIVATE_OK) == ["10.0.0.7"]
    assert issubclass(BlockedAddress, OSError)  # connection code treats it as a connect failure


def test_literal_ip_recognises_bracketed_ipv6_and_not_names() -> None:
    assert str(literal_ip("[::1]")) == "::1"
    assert str(literal_ip("10.0.0.1")) == "10.0.0.1"
    assert literal_ip("2130706433") is None  # a name to resolve (and then check), not a literal
    assert literal_ip("images.example.org") is None
