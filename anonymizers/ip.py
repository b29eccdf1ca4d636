"""IP addresses: strict parsing, geolocation, truncation.

`parse_ip` accepts IPv4 dotted quads and IPv6, with surrounding whitespace; anything else (a
port, leading zeros, a zone id, brackets, a prefix, garbage, a non-string) gives None, so the
event gets no geolocation and no IP. An IPv6 address that embeds an IPv4 address (see
`embedded_ipv4`: IPv4-mapped, 6to4, Teredo, NAT64, IPv4-compatible) is unwrapped to that IPv4
address, so it is geolocated and truncated as IPv4: a kept prefix never reveals more than the
IPv4 /24 (a 6to4 /48 would hold the whole IPv4 address).

`IpAnonymizer`, the chain's IP unit, turns a parsed address into the fields the policy
allows (country, region, city from `anonymizers.geo.GeoLookup`; ip_prefix); the address
itself never reaches the output.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from typing import Any, Final, NamedTuple

from anonymizers.allowlist import ip_probes
from anonymizers.geo import GeoLookup, Place
from anonymizers.memo import Memo, bounded_put
from anonymizers.outcome import Draft
from anonymizers.policy import GeoConfig

MAX_IPV4_PREFIX: Final = 24
"""Longest IPv4 prefix ever kept (bits); looser settings are rejected by the policy."""
MAX_IPV6_PREFIX: Final = 48
"""Longest IPv6 prefix ever kept (bits)."""
DEFAULT_CACHE_SIZE: Final = 131_072
"""Entries of the IP unit's caches (places and prefixes)."""
UNKNOWN_PLACE: Final = "unknown"
"""Region (and city, at city granularity) of an address whose country the database knows but
not that finer place. Explicit, so that a metric by (country, region) counts these people in
their country instead of skipping them (a fifth of real traffic, and every event with a
country-only database); no ISO 3166-2 code or English subdivision name reads "unknown"."""
_NOT_IPV4_CHARS: Final = -1
"""`ipv4_value`'s answer for a text with a character other than a digit or a dot."""
_MALFORMED_IPV4: Final = -2
"""`ipv4_value`'s answer for digits and dots that are no dotted quad."""
_IPV4_CHARS: Final = frozenset("0123456789.")
# NamedTuple construction without its Python-level __new__ (on every new address).
_new_tuple: Final = tuple.__new__
_IPV6_REJECT: Final = frozenset("%[]/ \t")
_LOW_32: Final = 0xFFFF_FFFF
_NAT64_WELL_KNOWN: Final = int(ipaddress.IPv6Address("64:ff9b::")) >> 32
"""64:ff9b::/96 (RFC 6052), its top 96 bits."""
_NAT64_LOCAL_USE: Final = int(ipaddress.IPv6Address("64:ff9b:1::")) >> 80
"""64:ff9b:1::/48 (RFC 8215), its top 48 bits."""


class ParsedIp(NamedTuple):
    """A valid address: version (4 or 6), its integer value and canonical text."""

    version: int
    value: int
    text: str


OUTPUT_FIELDS: Final = ("country", "region", "city", "ip_prefix")
"""The IP unit's output fields, in output order."""
_Fields = tuple[tuple[str, str], ...]


def ipv4_value(text: object) -> int:
    """The value of `text` as a dotted quad: four decimal octets 0-255 of one to three ASCII
    digits, no leading zero (010 is octal to some parsers, decimal to others), separated by
    single dots. -1 when `text` holds a character other than an ASCII digit or a dot (not
    IPv4); -2 when it holds only those but is no such quad (malformed)."""
    if not isinstance(text, str):
        raise TypeError("ipv4_value() takes a str")
    if not _IPV4_CHARS.issuperset(text):
        return _NOT_IPV4_CHARS
    parts = text.split(".")
    if len(parts) != 4:
        return _MALFORMED_IPV4
    value = 0
    for part in parts:
        size = len(part)
        if size == 0 or size > 3 or (size > 1 and part[0] == "0"):
            return _MALFORMED_IPV4
        octet = int(part)
        if octet > 255:
            return _MALFORMED_IPV4
        value = value << 8 | octet
    return value


def parse_ip(raw: object) -> ParsedIp | None:
    """A strictly parsed address, or None for anything that is not exactly one address.

    Dotted quads are read by `ipv4_value`: four octets 0-255, no leading zero.
    """
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not text or len(text) > 45:
        return None
    value = ipv4_value(text)
    if value >= 0:
        return _new_tuple(ParsedIp, (4, value, text))
    if value != _NOT_IPV4_CHARS:
        return None
    if ":" not in text or not _IPV6_REJECT.isdisjoint(text) or not text.isascii():
        return None
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return ParsedIp(4, int(embedded), str(embedded))
    return ParsedIp(6, int(address), address.compressed)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition address carries, or None for any other address.

    - IPv4-mapped `::ffff:a.b.c.d` (mmdb files written by common tools do not alias
      ::ffff:0:0/96, so the IPv4 must be looked up);
    - 6to4 `2002:AABB:CCDD::/48` (RFC 3056): bits 16-47;
    - Teredo `2001:0::/32` (RFC 4380): the client's address, the last 32 bits XOR 0xffffffff
      (`ipaddress` undoes the obfuscation); the server's address is not the person's;
    - NAT64 well-known prefix `64:ff9b::/96` (RFC 6052) and local-use `64:ff9b:1::/48`
      (RFC 8215): the last 32 bits. In the local-use block the operator chooses the prefix
      length; the /96 form, the NAT64 gateways' usual one, is assumed. Under a shorter
      form (RFC 6052 section 2.2) the last 32 bits hold zeros, or for a /64 prefix the
      IPv4's last octet then zeros: the kept /24 is then 0.0.0.0/24 or d.0.0.0/24, and the
      geolocation that of an unrelated address;
    - IPv4-compatible `::a.b.c.d` (RFC 4291, deprecated), but not `::` nor the loopback `::1`.
    """
    mapped = address.ipv4_mapped
    if mapped is not None:
        return mapped
    sixtofour = address.sixtofour
    if sixtofour is not None:
        return sixtofour
    teredo = address.teredo
    if teredo is not None:
        return teredo[1]
    value = int(address)
    if value >> 32 == _NAT64_WELL_KNOWN or value >> 80 == _NAT64_LOCAL_USE:
        return ipaddress.IPv4Address(value & _LOW_32)
    if value >> 32 == 0 and value > 1:
        return ipaddress.IPv4Address(value)
    return None


def truncate(ip: ParsedIp, *, ipv4_prefix: int, ipv6_prefix: int) -> str:
    """The network of `ip` at the given prefix length, as CIDR text ("81.2.69.0/24").

    Prefixes longer than /24 (IPv4) or /48 (IPv6) are refused: ValueError.
    """
    if not 0 <= ipv4_prefix <= MAX_IPV4_PREFIX or not 0 <= ipv6_prefix <= MAX_IPV6_PREFIX:
        raise ValueError("prefix longer than /24 (IPv4) or /48 (IPv6)")
    if ip.version == 4:
        bits, prefix, factory = 32, ipv4_prefix, ipaddress.IPv4Network
    else:
        bits, prefix, factory = 128, ipv6_prefix, ipaddress.IPv6Network  # type: ignore[assignment]
    host_bits = bits - prefix
    network = (ip.value >> host_bits) << host_bits
    return str(factory((network, prefix)))


class IpOutcome(NamedTuple):
    """The IP unit's output fields; None where the policy or the data gives nothing."""

    country: str | None
    region: str | None
    city: str | None
    ip_prefix: str | None


_NOTHING: Final = IpOutcome(None, None, None, None)


# What the IP unit memoises per raw IP text (a pure function of it and the policy; a tuple of
# strings, numbers and tuples, which the garbage collector stops tracking): (canonical text
# or None if malformed, output (name, value) pairs, echo needles, located).
_IpEntry = tuple[str | None, _Fields, tuple[str, ...], bool]
IP_MEMO_SIZE: Final = 65_536
"""Raw IP texts the unit remembers (entries)."""


class IpAnonymizer:
    """The chain's IP unit: geolocation at the policy's granularity, then the IP is dropped or
    truncated.

    Configured once from `GeoConfig`. As a unit it parses the event's `ip` (writing its
    canonical text, its spellings for the echo guard and whether it was located into the
    draft, for the subject's visitor id and the echo guard) and writes the allow-listed
    fields among `fields`; it never drops an event. Its answer per raw IP text is memoised.
    `outcome(ip)` gives the four fields of an address `parse_ip` returned (None for a missing
    or malformed one, which yields no geolocation and no prefix). When the country is known,
    the finer levels the granularity asks for are never absent: `UNKNOWN_PLACE` stands for
    what the database does not know. With no country, there is no geolocation.
    """

    def __init__(
        self,
        config: GeoConfig,
        geo: GeoLookup | None,
        *,
        fields: Collection[str] = OUTPUT_FIELDS,
        memo_size: int = IP_MEMO_SIZE,
    ) -> None:
        self._geo = geo if config.granularity != "none" else None
        self._granularity = config.granularity
        self._keep_prefix = config.keep_ip_prefix
        self._ipv4_prefix = config.ipv4_prefix
        self._ipv6_prefix = config.ipv6_prefix
        self._prefixes: dict[tuple[int, int], str] = {}
        self._wanted = frozenset(fields)
        self._want_prefix = self._keep_prefix and "ip_prefix" in self._wanted
        # Database place (cached tuple from GeoLookup.place) -> (output pairs, located).
        self._place_fields: dict[Place, tuple[_Fields, bool]] = {}
        self._geo_wanted = bool(self._wanted & {"country", "region", "city", "ip_prefix"})
        self.memo: Memo[str, _IpEntry] = Memo(self._entry, max_size=memo_size, values="object")
        self._table = self.memo.table

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        raw_ip = event.get("ip")
        if isinstance(raw_ip, str):
            entry = self._table.get(raw_ip)
            if entry is None:
                entry = self.memo.miss(raw_ip)
            out.ip_text, pairs, out.needles, out.located = entry
            fields = out.fields
            for name, value in pairs:
                fields[name] = value
        return None

    def _entry(self, raw_ip: str) -> _IpEntry:
        # The echo guard's probes for this address (every notation), memoised here with the
        # rest: the guard reads them from the draft instead of a memo of its own.
        probes = ip_probes(raw_ip)
        ip = parse_ip(raw_ip)
        if ip is None:
            return None, (), probes, False
        pairs, located = self.output_fields(ip) if self._geo_wanted else ((), False)
        return ip.text, pairs, probes, located

    def outcome(self, ip: ParsedIp | None) -> IpOutcome:
        """The four output fields of a parsed address (None where nothing is derived)."""
        if ip is None:
            return _NOTHING
        country = region = city = None
        if self._geo is not None:
            country, region, city = self._finer(self._geo.place(ip))
        prefix = self._prefix(ip) if self._keep_prefix else None
        return _new_tuple(IpOutcome, (country, region, city, prefix))

    def output_fields(self, ip: ParsedIp) -> tuple[_Fields, bool]:
        """The output fields of `ip` as (name, value) pairs in `OUTPUT_FIELDS` order, only
        names in `fields` and known values; and whether the address was geolocated."""
        fields: _Fields = ()
        located = False
        if self._geo is not None:
            place = self._geo.place(ip)
            known = self._place_fields.get(place)
            if known is None:
                known = self._place_entry(place)
                bounded_put(self._place_fields, place, known, max_size=DEFAULT_CACHE_SIZE)
            fields, located = known
        if self._want_prefix:
            fields = (*fields, ("ip_prefix", self._prefix(ip)))
        return fields, located

    def _place_entry(self, place: Place) -> tuple[_Fields, bool]:
        country, region, city = self._finer(place)
        found = (("country", country), ("region", region), ("city", city))
        wanted = self._wanted
        fields = tuple((n, v) for n, v in found if v is not None and n in wanted)
        return fields, country is not None

    def _finer(self, place: Place) -> tuple[str | None, str | None, str | None]:
        """(country, region, city) at the policy's granularity, `UNKNOWN_PLACE` filled in."""
        country, found_region, found_city = place
        region = city = None
        granularity = self._granularity
        if granularity != "country" and country is not None:
            region = found_region or UNKNOWN_PLACE
            if granularity == "city":
                city = found_city or UNKNOWN_PLACE
        return country, region, city

    def _prefix(self, ip: ParsedIp) -> str:
        prefix = self._ipv4_prefix if ip.version == 4 else self._ipv6_prefix
        key = (ip.version, ip.value >> ((32 if ip.version == 4 else 128) - prefix))
        text = self._prefixes.get(key)
        if text is None:
            if len(self._prefixes) >= DEFAULT_CACHE_SIZE:
                self._prefixes.clear()
            text = truncate(ip, ipv4_prefix=self._ipv4_prefix, ipv6_prefix=self._ipv6_prefix)
            self._prefixes[key] = text
        return text
