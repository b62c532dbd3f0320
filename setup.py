"""Builds the proxy's data path as C extensions; everything else stays plain Python.

The modules below are ordinary, type-checked Python: mypyc compiles them from the same source (native
classes with typed attributes, direct calls between them). The head rewriting, byte work that compiled
Python still does slowly, is also written in Cython (kedahttp/proxy/_heads.pyx) with http1.py as its
pure-Python twin. Together they cut the proxy's own CPU per request by more than half (bench/RESULTS.md). Set KEDAHTTP_COMPILE=0 to install them as pure Python instead, e.g.
on a platform without a C compiler; the behaviour is the same, only slower. `kedahttp proxy` logs which
one it runs, and /metrics carries it as kedahttp_proxy_build_info{data_path="compiled"|"python"}.
"""

import os

from setuptools import setup

# The request hot path and what it calls per request. Keep in sync with kedahttp/proxy/compiled.py.
COMPILED = [
    "kedahttp/proxy/counters.py",
    "kedahttp/proxy/dispatch.py",
    "kedahttp/proxy/forward.py",
    "kedahttp/proxy/holding.py",
    "kedahttp/proxy/http1.py",
    "kedahttp/proxy/pausing.py",
    "kedahttp/proxy/routing.py",
    "kedahttp/proxy/server.py",
    "kedahttp/proxy/upstream.py",
]

ext_modules = []
if os.environ.get("KEDAHTTP_COMPILE", "1") != "0":
    from Cython.Build import cythonize
    from mypyc.build import mypycify
    from setuptools import Extension

    ext_modules = mypycify(COMPILED, opt_level="3", debug_level="0", group_name="kedahttp.proxy.native")
    # the head rewriting and the request and response readers in C (kedahttp/proxy/heads.py picks them, or http1.py's and
    # reader.py's where they are missing); the parser is llhttp, whose C sources are kept in
    # kedahttp/proxy/llhttp/ (see SOURCE.md there) and built into the same extension
    llhttp = "kedahttp/proxy/llhttp"
    ext_modules += cythonize(
        [Extension("kedahttp.proxy._heads",
                   ["kedahttp/proxy/_heads.pyx", f"{llhttp}/llhttp.c", f"{llhttp}/api.c", f"{llhttp}/http.c"],
                   include_dirs=[llhttp], extra_compile_args=["-O2", "-fvisibility=hidden"]),
         # the HTTP/2 relay's frame-header scan (kedahttp/proxy/h2/relay.py picks it, or h2/frames.py's)
         Extension("kedahttp.proxy._frames", ["kedahttp/proxy/_frames.pyx"], extra_compile_args=["-O2"])],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )

setup(ext_modules=ext_modules)
