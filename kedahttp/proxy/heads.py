"""The head rewriting the data path calls: the C version (_heads.pyx) where it was built, else http1.py's.

Both give the same results (tests/unit/proxy/test_heads.py); the C one is several times cheaper per
message, which is most of the proxy's own work on a small request.
"""

from __future__ import annotations

try:
    from kedahttp.proxy._heads import head_end, rewrite_request, rewrite_response
except ImportError:  # built without the extension (KEDAHTTP_COMPILE=0, no compiler)
    from kedahttp.proxy.http1 import head_end, rewrite_request, rewrite_response

__all__ = ["head_end", "rewrite_request", "rewrite_response"]
