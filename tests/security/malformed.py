"""Fifty malformed requests, each carrying a known token (in a header, the query string or
HTTP Basic), for the check that every one gets a GitLab-shaped JSON answer and that the token
and the headers' values reach no log line."""

from __future__ import annotations

import base64

from gateway.app import MAX_HEADER_SIZE

PATH = "/api/v4/projects/1/packages/generic/pkg/1.0/file.bin"


def _head(request_line: str, *headers: str) -> bytes:
    return ("\r\n".join([request_line, *headers]) + "\r\n\r\n").encode("latin-1")


def malformed_requests(token: str, marker: str) -> list[tuple[str, bytes]]:
    """``(name, raw bytes)``; ``marker`` is a header value that must never be logged."""
    basic = base64.b64encode(f"gitlab-ci-token:{token}".encode()).decode()
    host = "Host: 127.0.0.1"
    pt = f"PRIVATE-TOKEN: {token}"
    mark = f"X-Marker: {marker}"
    put = f"PUT {PATH} HTTP/1.1"
    put_q = f"PUT {PATH}?private_token={token} HTTP/1.1"
    get_q = f"GET {PATH}?private_token={token} HTTP/1.1"
    long_path = PATH + "?private_token=" + token + "&pad=" + "a" * (MAX_HEADER_SIZE + 10)
    shapes: list[tuple[str, bytes]] = []

    def both(name: str, make) -> None:
        """One shape with the token as a header and again in the query string."""
        shapes.append((f"{name} (header)", make(put, pt)))
        shapes.append((f"{name} (query)", make(put_q, mark)))

    both("control character in a header value",
         lambda line, cred: _head(line, host, cred + "\x01", mark))
    both("NUL in a header value", lambda line, cred: _head(line, host, cred + "\x00", mark))
    both("space in a header name",
         lambda line, cred: _head(line, host, "PRIVATE TOKEN: " + token, cred, mark))
    both("space before the colon",
         lambda line, cred: _head(line, host, cred.replace(":", " :", 1), mark))
    both("duplicate Content-Length",
         lambda line, cred: _head(line, host, cred, mark, "Content-Length: 5",
                                  "Content-Length: 6"))
    both("negative Content-Length",
         lambda line, cred: _head(line, host, cred, mark, "Content-Length: -5"))
    both("non-numeric Content-Length",
         lambda line, cred: _head(line, host, cred, mark, "Content-Length: five"))
    both("Content-Length with a sign",
         lambda line, cred: _head(line, host, cred, mark, "Content-Length: +5"))
    both("Content-Length beyond 64 bits",
         lambda line, cred: _head(line, host, cred, mark,
                                  "Content-Length: 99999999999999999999999"))
    both("Content-Length and Transfer-Encoding",
         lambda line, cred: _head(line, host, cred, mark, "Content-Length: 5",
                                  "Transfer-Encoding: chunked"))
    both("unknown Transfer-Encoding",
         lambda line, cred: _head(line, host, cred, mark, "Transfer-Encoding: gzip"))
    both("chunked, then another coding",
         lambda line, cred: _head(line, host, cred, mark, "Transfer-Encoding: chunked, gzip"))
    both("a folded header line",
         lambda line, cred: _head(line, host, cred, " folded-" + marker, mark))
    both("header too large",
         lambda line, cred: _head(line, host, cred, mark, "X-Pad: " + "b" * (MAX_HEADER_SIZE + 10)))
    both("too many headers",
         lambda line, cred: _head(line, host, cred, mark,
                                  *(f"X-H{i}: {marker}" for i in range(200))))
    both("missing Host",
         lambda line, cred: _head(line, cred, mark))
    both("duplicate Host",
         lambda line, cred: _head(line, host, host, cred, mark))
    both("bad HTTP version",
         lambda line, cred: _head(line.replace("HTTP/1.1", "HTTP/1.x"), host, cred, mark))
    both("control character in the URL",
         lambda line, cred: _head(line.replace("/pkg/", "/p\x01kg/"), host, cred, mark))
    both("invalid method",
         lambda line, cred: _head(line.replace("PUT", "P(T"), host, cred, mark))
    both("bare LF line ends",
         lambda line, cred: _head(line, host, cred, mark).replace(b"\r\n", b"\n"))
    both("obsolete WebSocket key header",
         lambda line, cred: _head(line, host, cred, mark, "Sec-WebSocket-Key1: 1"))
    both("head too large in total",
         lambda line, cred: _head(line, host, cred, mark,
                                  *(f"X-P{i}: {'c' * 8000}" for i in range(12))))
    shapes += [
        ("Basic credentials with a control character",
         _head(put, host, f"Authorization: Basic {basic}\x7f", mark)),
        ("URL over the limit carrying private_token",
         _head(f"GET {long_path} HTTP/1.1", host, mark)),
        ("broken chunk size after the token",
         _head(get_q, host, mark, "Transfer-Encoding: chunked") + b"zz\r\nhello\r\n0\r\n\r\n"),
        ("TLS handshake bytes, then the token",
         b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + pt.encode() + b"\r\n\r\n"),
    ]
    return shapes
