"""Who may tell the proxy where a request came from: the TRUSTED_PROXIES networks, and RFC 7239 ``Forwarded``.

A peer inside TRUSTED_PROXIES (an ingress, a cloud load balancer) is believed: its X-Forwarded-For is kept
and our peer address appended, its X-Forwarded-Proto and -Host reach the app unchanged, and a ``Forwarded``
header it sent fills in whatever X-Forwarded-* it left out. Anyone else gets every one of those headers
replaced by what the proxy itself saw, so a client cannot forge the address an app logs or rate-limits by.
The default trusts nobody. Trust is decided once per client connection (the peer address does not change),
by ``TrustedProxies.trusts``; the header rewriting itself is in http1.py (and its C twin).

Pure: no I/O. The setting is parsed once at start (settings.parse_networks); lookups of a peer are cached
per address.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from kedahttp.process.settings import Network

_CACHE_LIMIT: Final = 4096


class TrustedProxies:
    """The networks whose peers are believed about forwarded headers."""

    __slots__ = ("_cache", "networks")

    def __init__(self, networks: tuple[Network, ...] = ()) -> None:
        self.networks = networks
        self._cache: dict[bytes, bool] = {}

    def trusts(self, peer: bytes) -> bool:
        """Whether the peer address (as the connection reports it, e.g. ``b"10.1.2.3"``) is trusted.

        An IPv4 peer on a dual-stack socket (``::ffff:10.1.2.3``) is matched as its IPv4 address.
        """
        if not self.networks:
            return False
        known = self._cache.get(peer)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(peer.decode("ascii").partition("%")[0])
        except (ValueError, UnicodeDecodeError):
            result = False
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            result = any(address in network for network in self.networks)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[peer] = result
        return result


# -- RFC 7239 ---------------------------------------------------------------------------------------------

def forwarded_elements(value: bytes) -> list[dict[bytes, bytes]]:
    """The elements of a ``Forwarded`` value, nearest-to-client first: ``for=a;proto=https, for=b`` ->
    ``[{b"for": b"a", b"proto": b"https"}, {b"for": b"b"}]``. Parameter names are lower-cased, quoted
    strings unquoted; anything malformed inside a pair is skipped rather than failing the request.
    """
    elements: list[dict[bytes, bytes]] = []
    for element in _split_unquoted(value, 44):  # ","
        params: dict[bytes, bytes] = {}
        for pair in _split_unquoted(element, 59):  # ";"
            name, eq, raw = pair.partition(b"=")
            name = name.strip().lower()
            if not eq or not name:
                continue
            params[name] = _unquote(raw.strip())
        if params:
            elements.append(params)
    return elements


def _split_unquoted(value: bytes, sep: int) -> list[bytes]:
    """Splits on ``sep`` outside double quotes (a quoted IPv6 ``for`` holds colons, a host may hold ``;``)."""
    parts: list[bytes] = []
    start = 0
    quoted = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == 34:  # '"'
            quoted = not quoted
        elif c == 92 and quoted:  # backslash escape inside a quoted string
            i += 1
        elif c == sep and not quoted:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return parts


def _unquote(raw: bytes) -> bytes:
    if len(raw) >= 2 and raw[:1] == b'"' and raw[-1:] == b'"':
        out = bytearray()
        escaped = False
        for c in raw[1:-1]:
            if c == 92 and not escaped:
                escaped = True
                continue
            escaped = False
            out.append(c)
        return bytes(out)
    return raw


def node_address(node: bytes) -> bytes:
    """A ``for=`` node as X-Forwarded-For writes it: ``"[2001:db8::1]:4711"`` -> ``2001:db8::1``,
    ``192.0.2.60:80`` -> ``192.0.2.60``; ``unknown`` and obfuscated ``_names`` stay as they are."""
    if node[:1] == b"[":
        end = node.find(b"]")
        return node[1:end] if end > 0 else node
    if node.count(b":") == 1:
        return node.partition(b":")[0]
    return node


def node_token(address: bytes) -> bytes:
    """Our peer address as a ``for=`` value: IPv6 bracketed and quoted (RFC 7239 section 6)."""
    if b":" in address:
        return b'"[' + address + b']"'
    return address


def derive_from_forwarded(value: bytes) -> tuple[bytes, bytes, bytes]:
    """What a trusted ``Forwarded`` value says, as X-Forwarded-* would: ``(for_chain, proto, host)``.

    ``for_chain`` lists every element's ``for`` in order (empty when none has one); ``proto`` and ``host``
    come from the last element, the one added by the trusted peer itself: the scheme and Host the client
    used to reach it. Empty where the header does not say.
    """
    elements = forwarded_elements(value)
    chain = b", ".join(node_address(e[b"for"]) for e in elements if e.get(b"for"))
    last = elements[-1] if elements else {}
    return chain, last.get(b"proto", b""), last.get(b"host", b"")


# The forwarded headers a stream's head may carry, by lower-case name (HTTP/2 field names are lower case):
# the four a trusted peer's word is merged from (several of one name joined with ", "), and two passed as
# they came from a trusted peer only.
TOLD_NAMES: Final = frozenset((b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"))
PASSED_NAMES: Final = frozenset((b"x-forwarded-port", b"x-real-ip"))
FORWARDED_NAMES: Final = TOLD_NAMES | PASSED_NAMES


def forwarded_fields(told: dict[bytes, bytes], passed: list[tuple[bytes, bytes]], trusted: bool, client_ip: bytes,
                     proto: bytes, host: bytes) -> list[tuple[bytes, bytes]]:
    """The forwarded headers to send on for a request whose own came from a ``trusted`` peer or not
    (``told``: TOLD_NAMES -> value; ``passed``: the PASSED_NAMES fields in order): the rule
    http1.rewrite_request applies inline on the HTTP/1.1 hot path, for the HTTP/2 side
    (tests/unit/proxy/test_forwarded.py ties the two)."""
    xff = xfp = xfh = fwd = b""
    out: list[tuple[bytes, bytes]] = []
    if trusted:
        xff, xfp, xfh, fwd = (told.get(n, b"") for n in
                              (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"))
        if fwd:
            fwd_for, fwd_proto, fwd_host = derive_from_forwarded(fwd)
            xff, xfp, xfh = xff or fwd_for, xfp or fwd_proto, xfh or fwd_host
        out += passed
    out.append((b"x-forwarded-for", xff + b", " + client_ip if xff else client_ip))
    out.append((b"x-forwarded-proto", xfp or proto))
    if xfh or host:
        out.append((b"x-forwarded-host", xfh or host))
    if fwd:
        out.append((b"forwarded", fwd + b", for=" + node_token(client_ip)))
    return out
