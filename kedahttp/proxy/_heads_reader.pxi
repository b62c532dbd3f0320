# The request reader of _heads.pyx (included there, so it shares that module's C core): llhttp bound
# directly, the twin of reader.py. Kept in its own file for size only; it is compiled as part of _heads.

cdef extern from "llhttp.h":
    ctypedef struct llhttp_t:
        void* data
        unsigned char method
        unsigned char http_major
        unsigned char http_minor
        unsigned char upgrade
        unsigned short flags
        unsigned short status_code
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
        HPE_INVALID_STATUS
    ctypedef enum llhttp_type_t:
        HTTP_REQUEST
        HTTP_RESPONSE
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


cdef int _raise_parse_error(llhttp_t* parser, llhttp_errno_t err, const char* start, object cause) except -1:
    """Raises what httptools raises for llhttp's ``err`` on a read that began at ``start`` (both readers):
    HttpParserUpgrade with the offset of the bytes after the head (the parser freed from the pause, as
    httptools does), HttpParserCallbackError with the callback's exception as its context, or the parse
    error."""
    if err == HPE_PAUSED_UPGRADE and parser.upgrade == 1:
        offset = llhttp_get_error_pos(parser) - start
        llhttp_resume_after_upgrade(parser)
        raise HttpParserUpgrade(offset)
    reason = (llhttp_get_error_reason(parser) or b"").decode("latin-1")
    if err in (HPE_CB_MESSAGE_BEGIN, HPE_CB_HEADERS_COMPLETE, HPE_CB_MESSAGE_COMPLETE, HPE_CB_CHUNK_HEADER,
               HPE_CB_CHUNK_COMPLETE, HPE_USER):
        exc = HttpParserCallbackError(reason)
        if cause is not None:
            exc.__context__ = cause
        raise exc
    if err == HPE_INVALID_STATUS:
        raise HttpParserInvalidStatusError(reason)
    if err == HPE_INVALID_METHOD:
        raise HttpParserInvalidMethodError(reason)
    if err == HPE_INVALID_URL:
        raise HttpParserInvalidURLError(reason)
    raise HttpParserError(reason)


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
        if err != HPE_OK:
            last, self._last_error = self._last_error, None
            _raise_parse_error(&self.parser, err, start, last)

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
