# The response reader of _heads.pyx (included there after _heads_reader.pxi, whose llhttp declarations and
# error raising it shares): llhttp bound directly, the twin of reader.ResponseReader.

from kedahttp.proxy.reader import ResponseHeadTooLarge

cdef Py_ssize_t _MAX_RESPONSE_HEAD_BYTES = http1.MAX_RESPONSE_HEAD_BYTES

cdef llhttp_settings_t _response_settings  # only the callbacks the twin's httptools parser has
llhttp_settings_init(&_response_settings)
_response_settings.on_headers_complete = _cb_response_head
_response_settings.on_body = _cb_response_body
_response_settings.on_message_complete = _cb_response_complete


@cython.final
cdef class ResponseReader:
    """reader.ResponseReader in C: the head's raw bytes kept in one buffer of the reader's, the head handed
    on as one bytes object with its status, no Python call for anything else of the parse."""

    cdef llhttp_t parser
    cdef object _on_head, _on_body, _on_complete
    cdef object _last_error
    cdef char* block  # the raw bytes of the head being read, from its first byte
    cdef Py_ssize_t size, capacity
    cdef bint in_head, head_done

    def __cinit__(self, protocol):
        llhttp_init(&self.parser, HTTP_RESPONSE, &_response_settings)
        self.parser.data = <void*>self
        self._on_head = protocol.on_head
        self._on_body = protocol.on_body
        self._on_complete = protocol.on_message_complete

    def __dealloc__(self):
        free(self.block)

    def begin(self):
        """reader.ResponseReader.begin."""
        self.in_head = True
        self.size = 0
        if self.capacity > 4 * _FIRST_BLOCK:  # a big head earlier: its buffer is not kept
            free(self.block)
            self.block = NULL
            self.capacity = 0

    def feed_data(self, bytes data):
        """reader.ResponseReader.feed_data."""
        cdef const char* start = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), need, capacity
        cdef bint had = self.size > 0
        cdef char* grown
        if self.in_head:
            need = self.size + n
            if need > self.capacity:
                capacity = max(_FIRST_BLOCK, self.capacity * 2, need)
                grown = <char*>realloc(self.block, capacity)
                if grown == NULL:
                    raise MemoryError()
                self.block = grown
                self.capacity = capacity
            memcpy(self.block + self.size, start, n)
            self.size = need
            if had and need > _MAX_RESPONSE_HEAD_BYTES:
                raise ResponseHeadTooLarge()
        cdef llhttp_errno_t err = llhttp_execute(&self.parser, start, n)
        if err == HPE_OK:
            return
        if self.head_done:  # as the twin: a new parse from the next read on, the rest of this one dropped
            self.head_done = False
            self._last_error = None
            llhttp_init(&self.parser, HTTP_RESPONSE, &_response_settings)
            self.parser.data = <void*>self
            return
        last, self._last_error = self._last_error, None
        _raise_parse_error(&self.parser, err, start, last)

    def buffer_bytes(self):
        """What the reader holds for heads now (for the tests)."""
        return self.capacity


cdef int _cb_response_head(llhttp_t* parser) noexcept:
    cdef ResponseReader reader = <ResponseReader>parser.data
    cdef int status = parser.status_code
    cdef Py_ssize_t end = -1, i = 0, n = reader.size
    cdef const char* s = reader.block
    head = None
    if n >= 5 and memcmp(s, b"HTTP/", 5) == 0:
        while True:  # the CRLF CRLF (llhttp has just read it, so it is there)
            i = _find_crlf(s, i, n)
            if i < 0 or i + 3 >= n:
                break
            if s[i + 2] == b'\r' and s[i + 3] == b'\n':
                end = i
                break
            i += 2
        head = PyBytes_FromStringAndSize(s, end + 2)
        if status < 200 and status != 101:  # an interim response; the final one follows
            memmove(reader.block, s + end + 4, n - end - 4)
            reader.size = n - end - 4
        else:
            reader.in_head = False
            reader.size = 0
    try:
        if reader._on_head(status, head):
            reader.head_done = True
            return -1
    except BaseException as exc:
        reader._last_error = exc
        return -1
    return 1 if parser.upgrade else 0


cdef int _cb_response_body(llhttp_t* parser, const char* at, size_t length) noexcept:
    cdef ResponseReader reader = <ResponseReader>parser.data
    try:
        reader._on_body(PyBytes_FromStringAndSize(at, length))
    except BaseException as exc:
        llhttp_set_error_reason(parser, "`on_body` callback error")
        reader._last_error = exc
        return HPE_USER
    return 0


cdef int _cb_response_complete(llhttp_t* parser) noexcept:
    cdef ResponseReader reader = <ResponseReader>parser.data
    try:
        reader._on_complete(llhttp_should_keep_alive(parser) != 0)
    except BaseException as exc:
        reader._last_error = exc
        return -1
    return 0
