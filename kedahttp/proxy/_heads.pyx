# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The request and response head rewriting of http1.py, in C, for the shapes nearly every message has, and
the request reader of reader.py, in C: llhttp (kedahttp/proxy/llhttp/) bound directly, its head rewritten
from the reader's own buffer by the same core as ``rewrite_request`` (at the end of this file).

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
from libc.string cimport memchr, memcmp, memcpy

from httptools import (HttpParserCallbackError, HttpParserError, HttpParserInvalidMethodError,
                       HttpParserInvalidURLError, HttpParserUpgrade)

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


# -- the request parser ------------------------------------------------------------------------------

cdef extern from "llhttp.h":
    ctypedef struct llhttp_t:
        void* data
        unsigned char method
        unsigned char http_major
        unsigned char http_minor
        unsigned char upgrade
        unsigned short flags
    ctypedef int (*llhttp_data_cb)(llhttp_t*, const char*, size_t) noexcept
    ctypedef int (*llhttp_cb)(llhttp_t*) noexcept
    ctypedef struct llhttp_settings_t:
        llhttp_cb on_message_begin
        llhttp_data_cb on_url
        llhttp_data_cb on_header_field
        llhttp_data_cb on_header_value
        llhttp_cb on_headers_complete
        llhttp_data_cb on_body
        llhttp_cb on_message_complete
    ctypedef enum llhttp_errno_t:
        HPE_OK
        HPE_PAUSED_UPGRADE
        HPE_USER
        HPE_CB_MESSAGE_BEGIN
        HPE_CB_HEADERS_COMPLETE
        HPE_CB_MESSAGE_COMPLETE
        HPE_CB_CHUNK_HEADER
        HPE_CB_CHUNK_COMPLETE
        HPE_INVALID_METHOD
        HPE_INVALID_URL
    ctypedef enum llhttp_type_t:
        HTTP_REQUEST
    enum:
        F_CHUNKED
        F_CONTENT_LENGTH
        F_TRANSFER_ENCODING
        HTTP_CONNECT
    void llhttp_settings_init(llhttp_settings_t* settings)
    void llhttp_init(llhttp_t* parser, llhttp_type_t kind, const llhttp_settings_t* settings)
    llhttp_errno_t llhttp_execute(llhttp_t* parser, const char* data, size_t length)
    int llhttp_should_keep_alive(const llhttp_t* parser)
    void llhttp_resume_after_upgrade(llhttp_t* parser)
    llhttp_errno_t llhttp_get_errno(const llhttp_t* parser)
    const char* llhttp_get_error_reason(const llhttp_t* parser)
    void llhttp_set_error_reason(llhttp_t* parser, const char* reason)
    const char* llhttp_get_error_pos(const llhttp_t* parser)
    const char* llhttp_method_name(unsigned char method)


cdef llhttp_settings_t _settings  # the same callbacks for every reader (llhttp keeps a pointer to them)
llhttp_settings_init(&_settings)
_settings.on_message_begin = _cb_message_begin
_settings.on_url = _cb_url
_settings.on_header_field = _cb_header_field
_settings.on_header_value = _cb_header_value
_settings.on_headers_complete = _cb_headers_complete
_settings.on_body = _cb_body
_settings.on_message_complete = _cb_message_complete

cdef list _method_names = [None] * 256  # llhttp's method numbers to names, made once each

cdef enum:
    _IDLE, _IN_NAME, _IN_VALUE  # where the head's parse is between header callbacks
    _FIRST_BLOCK = 2048  # a reader's first buffer; it grows with the heads it is sent


@cython.final
cdef class RequestReader:
    """reader.RequestReader in C: llhttp's callbacks copy the request line's target and the header lines
    into one buffer of the reader's (they may arrive over several reads) without a Python object per
    header, and ``rewrite`` writes the upstream head from that buffer (the same core as rewrite_request).
    Errors are httptools', raised as httptools raises them, so the server handles both readers alike."""

    cdef llhttp_t parser
    cdef object _on_message_begin, _on_headers_complete, _on_body, _on_message_complete
    cdef object _last_error
    cdef bytes last_target, last_host
    cdef char* block  # the target, then each header's name and value, as received
    cdef Py_ssize_t size, capacity
    cdef Field* fields
    cdef Py_ssize_t count, room
    cdef Py_ssize_t target_end
    cdef int state
    cdef bint in_head
    cdef readonly bint connection_header  # the head being parsed has a Connection header

    def __cinit__(self, protocol):
        llhttp_init(&self.parser, HTTP_REQUEST, &_settings)
        self.parser.data = <void*>self
        self._on_message_begin = protocol.on_message_begin
        self._on_headers_complete = protocol.on_headers_complete
        self._on_body = protocol.on_body
        self._on_message_complete = protocol.on_message_complete

    def __dealloc__(self):
        free(self.block)
        free(self.fields)

    cdef inline int _append(self, const char* at, size_t length) noexcept:
        """0, or -1 when out of memory."""
        cdef Py_ssize_t need = self.size + <Py_ssize_t>length, capacity
        cdef char* grown
        if need > self.capacity:
            capacity = max(_FIRST_BLOCK, self.capacity * 2, need)
            grown = <char*>realloc(self.block, capacity)
            if grown == NULL:
                return -1
            self.block = grown
            self.capacity = capacity
        memcpy(self.block + self.size, at, length)
        self.size = need
        return 0

    cdef inline int _new_field(self) noexcept:
        """0, or -1 when out of memory."""
        cdef Py_ssize_t room
        cdef Field* grown
        if self.count == self.room:
            room = max(32, self.room * 2)
            grown = <Field*>realloc(self.fields, room * sizeof(Field))
            if grown == NULL:
                return -1
            self.fields = grown
            self.room = room
        self.fields[self.count].name = self.size
        self.fields[self.count].n_name = 0
        self.fields[self.count].value = self.size
        self.fields[self.count].n_value = 0
        return 0

    cdef inline void _end_field(self) noexcept:
        cdef Field* f = &self.fields[self.count]
        if f.n_name == 10 and _is(self.block + f.name, 10, b"connection", 10):
            self.connection_header = True
        self.count += 1

    # -- what the server asks ----------------------------------------------------------------------

    def feed_data(self, bytes data):
        cdef const char* start = PyBytes_AS_STRING(data)
        cdef llhttp_errno_t err = llhttp_execute(&self.parser, start, PyBytes_GET_SIZE(data))
        if err == HPE_OK:
            return
        if err == HPE_PAUSED_UPGRADE and self.parser.upgrade == 1:
            # as httptools: the parser is freed from the pause at once, the offset of the rest returned
            offset = llhttp_get_error_pos(&self.parser) - start
            llhttp_resume_after_upgrade(&self.parser)
            raise HttpParserUpgrade(offset)
        reason = (llhttp_get_error_reason(&self.parser) or b"").decode("latin-1")
        if err in (HPE_CB_MESSAGE_BEGIN, HPE_CB_HEADERS_COMPLETE, HPE_CB_MESSAGE_COMPLETE, HPE_CB_CHUNK_HEADER,
                   HPE_CB_CHUNK_COMPLETE, HPE_USER):
            exc = HttpParserCallbackError(reason)
            if self._last_error is not None:
                exc.__context__ = self._last_error
                self._last_error = None
            raise exc
        if err == HPE_INVALID_METHOD:
            raise HttpParserInvalidMethodError(reason)
        if err == HPE_INVALID_URL:
            raise HttpParserInvalidURLError(reason)
        raise HttpParserError(reason)

    cdef bytes _method(self):
        cdef unsigned char method = self.parser.method
        name = _method_names[method]
        if name is None:
            name = _method_names[method] = <bytes>llhttp_method_name(method)
        return name

    def get_method(self):
        return self._method()

    def should_keep_alive(self):
        return llhttp_should_keep_alive(&self.parser) != 0

    def version(self):
        """The request's HTTP version as 10 * major + minor (11 for HTTP/1.1)."""
        return 10 * self.parser.http_major + self.parser.http_minor

    def target(self):
        return PyBytes_FromStringAndSize(self.block, self.target_end)

    def headers(self):
        cdef Py_ssize_t i
        cdef const char* block = self.block
        return [(_slice(block, self.fields[i].name, self.fields[i].n_name),
                 _slice(block, self.fields[i].value, self.fields[i].n_value)) for i in range(self.count)]

    def trim(self):
        """reader.RequestReader.trim: the buffer is freed (not within a head), to be made again by the next."""
        if self.in_head:
            return
        free(self.block)
        free(self.fields)
        self.block = NULL
        self.fields = NULL
        self.size = self.capacity = self.count = self.room = self.target_end = 0

    def buffer_bytes(self):
        """What the reader holds for heads now (for the tests)."""
        return self.capacity + self.room * sizeof(Field)

    def partial_head_bytes(self):
        cdef Py_ssize_t i, n = self.target_end + 16
        for i in range(self.count):
            n += self.fields[i].n_name + self.fields[i].n_value + 4
        return n

    def request(self, bytes client_ip, bytes proto, bint trusted):
        """reader.RequestReader.request: the same checks in the same order, then the same rewriting."""
        cdef llhttp_t* parser = &self.parser
        if parser.method == HTTP_CONNECT:
            raise _BadRequest(405, "CONNECT is not served")
        cdef bint http10 = False
        cdef int version = 10 * parser.http_major + parser.http_minor
        if version != 11:
            if version != 10:
                raise _BadRequest(400 if version < 10 else 505, "HTTP version not served")
            http10 = True
        cdef bytes method = self._method()
        cdef bytes target = self._target()
        # llhttp sets upgrade for a request only with "Connection: upgrade" and an Upgrade header, or for
        # CONNECT (refused above)
        cdef bint upgrade = self.connection_header and parser.upgrade
        cdef Rewritten told
        head = _rewrite_request(self.block, self.fields, self.count, method, target, client_ip, upgrade, proto,
                                trusted, &told)
        if head is None:
            head, host, target, body, expect_continue, upgrading = _py_rewrite_request(
                method, target, self.headers(), client_ip, upgrade, proto, trusted)
        else:
            host = b"" if told.host < 0 else self._host(told.host)
            body, expect_continue, upgrading = told.body, told.expect_continue, told.upgrading
        if not host and not http10:
            raise _BadRequest(400, "missing Host")
        return (method, llhttp_should_keep_alive(parser) != 0, http10, head, host, target, body, expect_continue,
                upgrading)

    # The target and Host of a connection's requests are mostly those of the request before: the bytes
    # made then serve again (no allocation, and the Host's hash, which routing takes, is already known).

    cdef bytes _target(self):
        cdef bytes last = self.last_target
        cdef Py_ssize_t n = self.target_end
        if last is None or PyBytes_GET_SIZE(last) != n or memcmp(PyBytes_AS_STRING(last), self.block, n) != 0:
            last = self.last_target = PyBytes_FromStringAndSize(self.block, n)
        return last

    cdef bytes _host(self, Py_ssize_t i):
        cdef bytes last = self.last_host
        cdef const char* value = self.block + self.fields[i].value
        cdef Py_ssize_t n = self.fields[i].n_value
        if last is None or PyBytes_GET_SIZE(last) != n or memcmp(PyBytes_AS_STRING(last), value, n) != 0:
            last = self.last_host = PyBytes_FromStringAndSize(value, n)
        return last


cdef int _cb_message_begin(llhttp_t* parser) noexcept:
    cdef RequestReader reader = <RequestReader>parser.data
    reader.size = reader.count = reader.target_end = 0
    reader.state = _IDLE
    reader.in_head = True
    reader.connection_header = False
    if reader.capacity > 4 * _FIRST_BLOCK:  # a big head earlier: its buffer is not kept
        free(reader.block)
        reader.block = NULL
        reader.capacity = 0
    try:
        reader._on_message_begin()
    except BaseException as exc:
        reader._last_error = exc
        return -1
    return 0


cdef int _out_of_memory(llhttp_t* parser) noexcept:
    """A callback could not grow the reader's buffer: the parse stops with a MemoryError as its cause."""
    cdef RequestReader reader = <RequestReader>parser.data
    llhttp_set_error_reason(parser, "out of memory")
    try:
        reader._last_error = MemoryError()
    except BaseException:
        pass
    return HPE_USER


cdef int _cb_url(llhttp_t* parser, const char* at, size_t length) noexcept:
    cdef RequestReader reader = <RequestReader>parser.data
    if reader._append(at, length) < 0:
        return _out_of_memory(parser)
    reader.target_end = reader.size
    return 0


cdef int _cb_header_field(llhttp_t* parser, const char* at, size_t length) noexcept:
    cdef RequestReader reader = <RequestReader>parser.data
    if not reader.in_head:  # a trailer field after a chunked body: not passed on, not kept
        return 0
    if reader.state != _IN_NAME:
        if reader.state == _IN_VALUE:
            reader._end_field()
        if reader._new_field() < 0:
            return _out_of_memory(parser)
        reader.state = _IN_NAME
    if reader._append(at, length) < 0:
        return _out_of_memory(parser)
    reader.fields[reader.count].n_name += length
    return 0


cdef int _cb_header_value(llhttp_t* parser, const char* at, size_t length) noexcept:
    cdef RequestReader reader = <RequestReader>parser.data
    if not reader.in_head:
        return 0
    if reader.state != _IN_VALUE:
        reader.state = _IN_VALUE
        reader.fields[reader.count].value = reader.size
    if reader._append(at, length) < 0:
        return _out_of_memory(parser)
    reader.fields[reader.count].n_value += length
    return 0


cdef int _cb_headers_complete(llhttp_t* parser) noexcept:
    cdef RequestReader reader = <RequestReader>parser.data
    if reader.state == _IN_VALUE:
        reader._end_field()
    reader.state = _IDLE
    reader.in_head = False
    try:
        reader._on_headers_complete()
    except BaseException as exc:
        reader._last_error = exc
        return -1
    return 1 if parser.upgrade else 0


cdef int _cb_body(llhttp_t* parser, const char* at, size_t length) noexcept:
    cdef RequestReader reader = <RequestReader>parser.data
    try:
        reader._on_body(PyBytes_FromStringAndSize(at, length))
    except BaseException as exc:
        llhttp_set_error_reason(parser, "`on_body` callback error")
        reader._last_error = exc
        return HPE_USER
    return 0


cdef int _cb_message_complete(llhttp_t* parser) noexcept:
    # only a request with a body: one without is complete with its head (reader.py)
    if not parser.flags & (F_CONTENT_LENGTH | F_TRANSFER_ENCODING):
        return 0
    cdef RequestReader reader = <RequestReader>parser.data
    try:
        reader._on_message_complete()
    except BaseException as exc:
        reader._last_error = exc
        return -1
    return 0
