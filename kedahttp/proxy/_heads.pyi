from kedahttp.proxy.http1 import RequestHead, ResponseHead

def rewrite_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], client_ip: bytes, upgrade: bool,
    proto: bytes = b"http", trusted: bool = False,
) -> RequestHead: ...
def rewrite_response(
    status: int, head: bytes, bodiless: bool, client_http10: bool, keep_alive: bool, cold: bool,
) -> ResponseHead: ...
def head_end(data: bytes) -> int: ...
