"""HTTP/2 on the proxy port: prior-knowledge h2c from clients, h2c to apps that declare it (docs/http2.md)."""
