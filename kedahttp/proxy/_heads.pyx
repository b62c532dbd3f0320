# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The request and response head rewriting of http1.py, in C, for the shapes nearly every message has, and
the request reader of reader.py, in C: llhttp (kedahttp/proxy/llhttp/) bound directly, its head rewritten
from the reader's own buffer by the same core as ``rewrite_request`` (_heads_reader.pxi, included at the
end of this file), and reader.py's response reader over the same binding (_heads_response.pxi).

``rewrite_request`` and ``rewrite_response`` take and return exactly what the functions of the same name in
http1.py do, and give the same result (tests/unit/proxy/test_heads.py checks it on generated heads). Each
walks the head once over raw bytes and writes the new head into one buffer. Anything unusual is handed to
http1.py whole, so the rules live in one place: an absolute-form or ``*`` target, a Connection header that
names other headers, more than one Host or Transfer-Encoding, a Transfer-Encoding other than ``chunked``,
from a trusted peer a ``Forwarded`` header or more than one X-Forwarded-For, -Proto or -Host, a head over
the size limit, a response with both Content-Length and Transfer-Encoding.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

from httptools import (HttpParserCallbackError, HttpParserError, HttpParserInvalidMethodError,
                       HttpParserInvalidStatusError, HttpParserInvalidURLError, HttpParserUpgrade)

from kedahttp.proxy import http1

cdef object _py_rewrite_request = http1.rewrite_request
cdef object _BadRequest = http1.BadRequest
cdef object _py_rewrite_response = http1.rewrite_response
cdef Py_ssize_t _MAX_HEADER_BYTES = http1.MAX_HEADER_BYTES
cdef int _NO_BODY = http1.NO_BODY
cdef int _LENGTH = http1.LENGTH
cdef int _CHUNKED = http1.CHUNKED
cdef int _UNTIL_CLOSE = http1.UNTIL_CLOSE
cdef enum:
    _STACK_HEAD = 8192  # a request head up to this size is written on the stack

# request header names handled specially
cdef enum:
    H_OTHER, H_HOST, H_CONNECTION, H_DROP, H_TE, H_EXPECT, H_CL, H_UPGRADE, H_PROXY,
    H_XFF, H_XFP, H_XFH, H_FWD  # the forwarding family, last: ``code >= H_XFF``


cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef inline bint _is(const char* s, Py_ssize_t n, const char* lit, Py_ssize_t m) noexcept nogil:
    """``s[:n]`` equals the lower-case literal ``lit[:m]``, ignoring ASCII case."""
    cdef Py_ssize_t i
    if n != m:
        return False
    for i in range(n):
        if _lower(<unsigned char>s[i]) != <unsigned char>lit[i]:
            return False
    return True


cdef inline bint _starts(const char* s, Py_ssize_t n, const char* lit, Py_ssize_t m) noexcept nogil:
    return n >= m and _is(s, m, lit, m)


cdef int _request_code(const char* s, Py_ssize_t n, bint trusted) noexcept nogil:
    cdef unsigned char c
    if n < 2:
        return H_OTHER
    c = _lower(<unsigned char>s[0])
    if c == b'h':
        return H_HOST if _is(s, n, b"host", 4) else H_OTHER
    if c == b'c':
        if _is(s, n, b"connection", 10):
            return H_CONNECTION
        return H_CL if _is(s, n, b"content-length", 14) else H_OTHER
    if c == b'k':
        return H_DROP if _is(s, n, b"keep-alive", 10) else H_OTHER
    if c == b't':
        if _is(s, n, b"te", 2) or _is(s, n, b"trailer", 7):
            return H_DROP
        return H_TE if _is(s, n, b"transfer-encoding", 17) else H_OTHER
    if c == b'u':
        return H_UPGRADE if _is(s, n, b"upgrade", 7) else H_OTHER
    if c == b'x':
        if _is(s, n, b"x-forwarded-for", 15):
            return H_XFF
        if _is(s, n, b"x-forwarded-proto", 17):
            return H_XFP
        if _is(s, n, b"x-forwarded-host", 16):
            return H_XFH
        if _is(s, n, b"x-forwarded-port", 16) or _is(s, n, b"x-real-ip", 9):
            return H_OTHER if trusted else H_DROP
        return H_OTHER
    if c == b'f':
        return H_FWD if _is(s, n, b"forwarded", 9) else H_OTHER
    if c == b'e':
        return H_EXPECT if _is(s, n, b"expect", 6) else H_OTHER
    if c == b'p':
        return H_PROXY if _starts(s, n, b"proxy-", 6) else H_OTHER
    return H_OTHER


cdef inline void _trim(const char** s, Py_ssize_t* n) noexcept nogil:
    while n[0] and (s[0][0] == b' ' or s[0][0] == b'\t'):
        s[0] += 1
        n[0] -= 1
    while n[0] and (s[0][n[0] - 1] == b' ' or s[0][n[0] - 1] == b'\t'):
        n[0] -= 1


cdef bint _only_kept_tokens(const char* s, Py_ssize_t n) noexcept nogil:
    """Every token of a Connection value is one the proxy handles itself (close, keep-alive, upgrade and
    the framing and Host names, which a Connection header never removes)."""
    cdef Py_ssize_t i = 0, start, length
    cdef const char* token
    while i <= n:
        start = i
        while i < n and s[i] != b',':
            i += 1
        token = s + start
        length = i - start
        _trim(&token, &length)
        if length and not (
            _is(token, length, b"close", 5) or _is(token, length, b"keep-alive", 10)
            or _is(token, length, b"upgrade", 7) or _is(token, length, b"content-length", 14)
            or _is(token, length, b"transfer-encoding", 17) or _is(token, length, b"host", 4)
        ):
            return False
        i += 1
    return True


cdef inline char* _put(char* out, const char* s, Py_ssize_t n) noexcept nogil:
    memcpy(out, s, n)
    return out + n


cdef struct Field:
    # one header line of a request head: offsets into the block that holds the head's bytes
    Py_ssize_t name
    Py_ssize_t n_name
    Py_ssize_t value
    Py_ssize_t n_value
    int code  # what _request_code says of the name (set by the first pass of _rewrite_request)


cdef inline bytes _slice(const char* block, Py_ssize_t at, Py_ssize_t n):
    return PyBytes_FromStringAndSize(block + at, n)


cdef struct Rewritten:
    # what _rewrite_request tells besides the head
    Py_ssize_t host  # the field holding the Host, or -1
    int body
    bint expect_continue
    bint upgrading


cdef object _rewrite_request(const char* block, Field* fields, Py_ssize_t count, bytes method,
                             bytes target, bytes client_ip, bint upgrade, bytes proto, bint trusted,
                             Rewritten* told_out):
    """http1.rewrite_request's head over a head held as ``fields`` of ``block`` (the rest in
    ``told_out``), or None where http1.py must decide (the cases the module docstring lists)."""
    cdef Py_ssize_t n_target = PyBytes_GET_SIZE(target)
    if n_target == 0 or PyBytes_AS_STRING(target)[0] != b'/':
        return None
    cdef Py_ssize_t size = PyBytes_GET_SIZE(method) + n_target + 12, total, i
    # the index of the field holding each value that is used, or -1
    cdef Py_ssize_t host = -1, xff = -1, xfp = -1, xfh = -1, upgrade_value = -1
    cdef bint expect_continue = False, has_length = False, chunked = False
    cdef int code, told = 0
    cdef const char* name
    cdef const char* value
    cdef Py_ssize_t n_name, n_value
    # First pass: classify, check, and measure what is passed on.
    for i in range(count):
        name = block + fields[i].name
        n_name = fields[i].n_name
        value = block + fields[i].value
        n_value = fields[i].n_value
        size += n_name + n_value + 4
        code = fields[i].code = _request_code(name, n_name, trusted)
        if code == H_OTHER or code == H_DROP or code == H_PROXY:
            continue
        if code == H_CL:
            has_length = True
        elif code == H_HOST:
            if host >= 0:
                return None
            host = i
        elif code >= H_XFF:  # believed from a trusted peer only; from anyone else dropped (not written)
            if trusted:
                # RFC 7239 (parsed to fill in what X-Forwarded-* leaves out) or several of one name (joined
                # in order): the reference does those
                if code == H_FWD or told & (1 << code):
                    return None
                told |= 1 << code
                if n_value:
                    if code == H_XFF:
                        xff = i
                    elif code == H_XFP:
                        xfp = i
                    else:
                        xfh = i
        elif code == H_EXPECT:
            if _is(value, n_value, b"100-continue", 12):  # exactly, as http1.py
                expect_continue = True
        elif code == H_UPGRADE:
            upgrade_value = i
        elif code == H_CONNECTION:
            if not _only_kept_tokens(value, n_value):
                return None
        elif code == H_TE:
            _trim(&value, &n_value)
            if chunked or not _is(value, n_value, b"chunked", 7):
                return None
            chunked = True
    if size > _MAX_HEADER_BYTES:
        return None
    cdef bint upgrading = upgrade and upgrade_value >= 0 and fields[upgrade_value].n_value > 0
    # ``size`` already counts the request line and every header as received (what is passed on is no
    # more); the added lines are X-Forwarded-* (with the Host and a trusted peer's X-Forwarded-*), the
    # upgrade pair and the framing.
    cdef const char* xfp_s = PyBytes_AS_STRING(proto)
    cdef Py_ssize_t n_xfp = PyBytes_GET_SIZE(proto)
    if xfp >= 0:
        xfp_s = block + fields[xfp].value
        n_xfp = fields[xfp].n_value
    cdef const char* xfh_s = block
    cdef Py_ssize_t n_xfh = 0
    if host >= 0:
        xfh_s = block + fields[host].value
        n_xfh = fields[host].n_value
    if xfh >= 0:
        xfh_s = block + fields[xfh].value
        n_xfh = fields[xfh].n_value
    total = size + PyBytes_GET_SIZE(client_ip) + n_xfp + n_xfh + 160  # 124 at most
    if xff >= 0:
        total += fields[xff].n_value
    if upgrading:
        total += fields[upgrade_value].n_value
    # a head of a few KiB (nearly all) is written on the stack; bigger ones in a buffer of their own
    cdef char stack[_STACK_HEAD]
    cdef char* buf = stack
    if total > _STACK_HEAD:
        buf = <char*>malloc(total)
        if buf == NULL:
            raise MemoryError()
    cdef char* out = buf
    # Second pass: write.
    try:
        out = _put(out, PyBytes_AS_STRING(method), PyBytes_GET_SIZE(method))
        out = _put(out, b" ", 1)
        out = _put(out, PyBytes_AS_STRING(target), n_target)
        out = _put(out, b" HTTP/1.1\r\n", 11)
        for i in range(count):
            name = block + fields[i].name
            n_name = fields[i].n_name
            value = block + fields[i].value
            n_value = fields[i].n_value
            code = fields[i].code
            if code == H_EXPECT:
                if _is(value, n_value, b"100-continue", 12):
                    continue
            elif not (code == H_OTHER or code == H_CL or code == H_HOST):
                continue
            out = _put(out, name, n_name)
            out = _put(out, b": ", 2)
            out = _put(out, value, n_value)
            out = _put(out, b"\r\n", 2)
        out = _put(out, b"X-Forwarded-For: ", 17)
        if xff >= 0:
            out = _put(out, block + fields[xff].value, fields[xff].n_value)
            out = _put(out, b", ", 2)
        out = _put(out, PyBytes_AS_STRING(client_ip), PyBytes_GET_SIZE(client_ip))
        out = _put(out, b"\r\nX-Forwarded-Proto: ", 21)
        out = _put(out, xfp_s, n_xfp)
        if n_xfh:
            out = _put(out, b"\r\nX-Forwarded-Host: ", 20)
            out = _put(out, xfh_s, n_xfh)
        if upgrading:
            out = _put(out, b"\r\nConnection: upgrade\r\nUpgrade: ", 32)
            out = _put(out, block + fields[upgrade_value].value, fields[upgrade_value].n_value)
        if chunked:
            out = _put(out, b"\r\nTransfer-Encoding: chunked\r\n\r\n", 32)
        else:
            out = _put(out, b"\r\n\r\n", 4)
        head = PyBytes_FromStringAndSize(buf, out - buf)
    finally:
        if buf != stack:
            free(buf)
    told_out.host = host
    told_out.body = _CHUNKED if chunked else (_LENGTH if has_length else _NO_BODY)
    told_out.expect_continue = expect_continue
    told_out.upgrading = upgrading
    return head


def rewrite_request(bytes method, bytes target, list headers, bytes client_ip, bint upgrade,
                    bytes proto=b"http", bint trusted=False):
    """http1.rewrite_request (same arguments, result and errors), over a list of (name, value) pairs: the
    form the tests compare with http1.py; RequestReader calls the same core on its own buffer."""
    cdef Py_ssize_t count = len(headers), i, n = 0
    cdef Rewritten told
    cdef tuple item
    cdef bytes name, value
    for item in headers:
        n += PyBytes_GET_SIZE(<bytes>item[0]) + PyBytes_GET_SIZE(<bytes>item[1])
    cdef char* block = <char*>malloc(n + 1)
    cdef Field* fields = <Field*>malloc((count + 1) * sizeof(Field))
    if block == NULL or fields == NULL:
        free(block)
        free(fields)
        raise MemoryError()
    n = 0
    try:
        for i in range(count):
            item = headers[i]
            name = item[0]
            value = item[1]
            fields[i].name = n
            fields[i].n_name = PyBytes_GET_SIZE(name)
            memcpy(block + n, PyBytes_AS_STRING(name), fields[i].n_name)
            n += fields[i].n_name
            fields[i].value = n
            fields[i].n_value = PyBytes_GET_SIZE(value)
            memcpy(block + n, PyBytes_AS_STRING(value), fields[i].n_value)
            n += fields[i].n_value
        head = _rewrite_request(block, fields, count, method, target, client_ip, upgrade, proto, trusted, &told)
        if head is not None:  # (``told`` is filled in only then)
            host = b"" if told.host < 0 else _slice(block, fields[told.host].value, fields[told.host].n_value)
    finally:
        free(block)
        free(fields)
    if head is None:
        return _py_rewrite_request(method, target, headers, client_ip, upgrade, proto, trusted)
    return (head, host, target, told.body, told.expect_continue, told.upgrading)


cdef inline Py_ssize_t _find_crlf(const char* s, Py_ssize_t start, Py_ssize_t n) noexcept nogil:
    """The offset of the first CRLF at or after ``start``, or -1 (memchr: the C library scans by words)."""
    cdef const char* p
    while start + 1 < n:
        p = <const char*>memchr(s + start, b'\r', n - 1 - start)
        if p == NULL:
            return -1
        if p[1] == b'\n':
            return p - s
        start = p - s + 1
    return -1


def head_end(bytes data):
    """http1.head_end: the offset of the CRLF CRLF that ends a head, or -1."""
    cdef const char* s = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), i = 0
    while True:
        i = _find_crlf(s, i, n)
        if i < 0 or i + 3 >= n:
            return -1
        if s[i + 2] == b'\r' and s[i + 3] == b'\n':
            return i
        i += 2


def rewrite_response(int status, bytes head, bint bodiless, bint client_http10, bint keep_alive, bint cold):
    """http1.rewrite_response (same arguments and result; called positionally on the hot path, which
    spares the keyword parsing)."""
    cdef const char* s = PyBytes_AS_STRING(head)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(head)
    cdef Py_ssize_t first = _find_crlf(s, 0, n)
    if first < 9:
        return _py_rewrite_response(status, head, bodiless=bodiless, client_http10=client_http10,
                                    keep_alive=keep_alive, cold=cold)
    cdef bint has_length = False, upstream_chunked = False
    cdef const char* upgrade_value = NULL
    cdef Py_ssize_t n_upgrade = 0
    # room for the head and what may be added: the cold-start header and the framing or upgrade lines (the
    # Upgrade value comes from a line that is dropped)
    cdef char* buf = <char*>malloc(n + 160)
    if buf == NULL:
        raise MemoryError()
    cdef char* out = buf
    cdef Py_ssize_t pos, end, colon, n_name, n_value
    cdef const char* line
    cdef const char* value
    cdef const char* p
    cdef unsigned char c
    cdef bint drop
    cdef int body
    cdef bint until_close = False
    try:
        if memcmp(s, b"HTTP/1.1 ", 9) == 0:
            out = _put(out, s, first + 2)  # the status line passes as it is (HTTP/1.1)
        else:
            out = _put(out, b"HTTP/1.1", 8)  # the version normalised
            out = _put(out, s + 8, first + 2 - 8)
        pos = first + 2
        while pos < n:
            end = _find_crlf(s, pos, n)
            if end < 0:  # not a head as the parser passes it: the reference decides
                return _py_rewrite_response(status, head, bodiless=bodiless, client_http10=client_http10,
                                            keep_alive=keep_alive, cold=cold)
            line = s + pos
            p = <const char*>memchr(line, b':', end - pos)
            colon = end - pos if p == NULL else p - line
            n_name = colon
            drop = False
            c = _lower(<unsigned char>line[0]) if n_name else 0
            if c == b'c':
                if _is(line, n_name, b"connection", 10):
                    value = line + colon + 1
                    n_value = end - pos - colon - 1
                    _trim(&value, &n_value)
                    if not (_is(value, n_value, b"keep-alive", 10) or _is(value, n_value, b"close", 5)
                            or _only_kept_tokens(value, n_value)):
                        return _py_rewrite_response(status, head, bodiless=bodiless,
                                                    client_http10=client_http10, keep_alive=keep_alive,
                                                    cold=cold)
                    drop = True
                elif _is(line, n_name, b"content-length", 14):
                    has_length = True
            elif c == b'k':
                drop = _is(line, n_name, b"keep-alive", 10)
            elif c == b't':
                if _is(line, n_name, b"transfer-encoding", 17):
                    drop = upstream_chunked = True
                else:
                    drop = _is(line, n_name, b"te", 2) or _is(line, n_name, b"trailer", 7)
            elif c == b'u':
                if _is(line, n_name, b"upgrade", 7):
                    drop = True
                    upgrade_value = line + colon + 1  # as sent, without the whitespace before it
                    n_upgrade = end - pos - colon - 1
                    while n_upgrade and (upgrade_value[0] == b' ' or upgrade_value[0] == b'\t'):
                        upgrade_value += 1
                        n_upgrade -= 1
            elif c == b'p':
                drop = _starts(line, n_name, b"proxy-", 6)
            if not drop:
                out = _put(out, line, end + 2 - pos)
            pos = end + 2
        if has_length and upstream_chunked:  # Content-Length must go too: the reference does that
            return _py_rewrite_response(status, head, bodiless=bodiless, client_http10=client_http10,
                                        keep_alive=keep_alive, cold=cold)
        if cold:
            out = _put(out, b"X-KEDAHTTP-Cold-Start: true\r\n", 29)
        if status == 101:
            out = _put(out, b"Connection: upgrade\r\nUpgrade: ", 30)
            if n_upgrade:
                out = _put(out, upgrade_value, n_upgrade)
            out = _put(out, b"\r\n\r\n", 4)
            return PyBytes_FromStringAndSize(buf, out - buf), _NO_BODY, False, False
        # deliberate twin of http1.rewrite_response's body decision (the reference, kept in step by
        # tests/unit/proxy/test_heads.py on generated heads)
        if bodiless or status < 200:
            body = _NO_BODY
        elif has_length and not upstream_chunked:
            body = _LENGTH
        elif client_http10:
            until_close = not upstream_chunked
            body = _UNTIL_CLOSE
            keep_alive = False
        else:
            until_close = not upstream_chunked
            body = _CHUNKED
            out = _put(out, b"Transfer-Encoding: chunked\r\n", 28)
        if status < 200:
            out = _put(out, b"\r\n", 2)
        elif not keep_alive:
            out = _put(out, b"Connection: close\r\n\r\n", 21)
        elif client_http10:
            out = _put(out, b"Connection: keep-alive\r\n\r\n", 26)
        else:
            out = _put(out, b"\r\n", 2)
        return PyBytes_FromStringAndSize(buf, out - buf), body, not keep_alive, until_close
    finally:
        free(buf)


# -- the request parser: llhttp's callbacks into one buffer, read back by _rewrite_request -------------

include "_heads_reader.pxi"
include "_heads_response.pxi"
