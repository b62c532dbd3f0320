"""Why a client connection stopped reading: bit flags, so several reasons can hold at once and reading
resumes only when the last one is gone. Their own module because three sides set them (the connection
for pipelining, the exchange for buffered bodies, the upstream connection for its full write buffer)
and none of those should import another for a constant."""

from __future__ import annotations

from typing import Final

PAUSE_PIPELINE: Final = 1  # a pipelined request waits for the one before it
PAUSE_UPSTREAM: Final = 2  # the upstream's write buffer is full
PAUSE_BUFFER: Final = 4  # request body buffered while there is no upstream yet
