"""Whether the data path runs compiled (mypyc, see setup.py) or as plain Python, and whether a compiled
module is older than its source (an edit not rebuilt: `make compile`)."""

from __future__ import annotations

import importlib
import importlib.machinery
from pathlib import Path

# The modules setup.py compiles with mypyc; tests/unit/proxy/test_compiled.py keeps the two lists equal.
COMPILED_MODULES = (
    "kedahttp.proxy.counters",
    "kedahttp.proxy.dispatch",
    "kedahttp.proxy.forward",
    "kedahttp.proxy.holding",
    "kedahttp.proxy.http1",
    "kedahttp.proxy.pausing",
    "kedahttp.proxy.routing",
    "kedahttp.proxy.server",
    "kedahttp.proxy.upstream",
)
# and with Cython: the head rewriting and the request and response readers over llhttp (http1.py's functions and
# reader.py's readers are used where it is missing), and the HTTP/2 relay's frame scan (h2/frames.py's)
CYTHON_MODULES = ("kedahttp.proxy._heads", "kedahttp.proxy._frames")


def _is_extension(path: str) -> bool:
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def data_path() -> str:
    """"compiled" when every data-path module was loaded from an extension, "python" when none was,
    "mixed" otherwise (a partial build: the pieces still work together, but it is not what was built)."""
    compiled = [_is_extension(importlib.import_module(name).__file__ or "") for name in COMPILED_MODULES]
    compiled += [_built(name) for name in CYTHON_MODULES]
    if all(compiled):
        return "compiled"
    return "python" if not any(compiled) else "mixed"


def _built(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def stale_modules() -> list[str]:
    """Compiled modules whose source file beside them is newer than the extension that was loaded."""
    stale = []
    for name in (*COMPILED_MODULES, *CYTHON_MODULES):
        try:
            loaded = importlib.import_module(name).__file__ or ""
        except ImportError:
            continue
        if not _is_extension(loaded):
            continue
        stem = name.rpartition(".")[2]
        folder = Path(loaded).parent
        if name in CYTHON_MODULES:  # the .pyx and the files it includes (_heads_reader.pxi)
            sources = [folder / (stem + ".pyx"), *folder.glob(stem + "_*.pxi")]
        else:
            sources = [folder / (stem + ".py")]
        if any(source.exists() and source.stat().st_mtime > Path(loaded).stat().st_mtime for source in sources):
            stale.append(name)
    return stale
