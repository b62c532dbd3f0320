"""The head rewriting and the request and response readers the data path calls: the C versions (_heads.pyx)
where they were built, else http1.py's functions and reader.py's readers.

Both give the same results (tests/unit/proxy/test_heads.py, test_reader.py, test_response_reader.py); the C ones are several times
cheaper per message, which is most of the proxy's own work on a small request.
"""

from __future__ import annotations

try:
    from kedahttp.proxy._heads import (
        RequestReader,
        ResponseReader,
        head_end,
        rewrite_request,
        rewrite_response,
    )
except ImportError:  # built without the extension (KEDAHTTP_COMPILE=0, no compiler)
    from kedahttp.proxy.http1 import head_end, rewrite_request, rewrite_response
    from kedahttp.proxy.reader import RequestReader, ResponseReader  # type: ignore[assignment]

__all__ = ["RequestReader", "ResponseReader", "head_end", "rewrite_request", "rewrite_response"]
