"""A real HTTP S3 endpoint for tests (moto in server mode) and a fault-injecting proxy in front of it."""

from __future__ import annotations

import http.client
import pathlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    """A moto S3 server on a free loopback port, for the tests of one module."""
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield port
    server.stop()


def use_s3_endpoint(monkeypatch: pytest.MonkeyPatch, port: int, tmp_path: pathlib.Path) -> None:
    """Point boto3, s3fs and the pipeline at the endpoint through the standard AWS settings."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "FITBIT_S3_MAX_ATTEMPTS": "10",
        # an s3:// lake needs a catalog every run reaches: here a SQL catalog in a local file
        "FITBIT_ICEBERG_CATALOG_URI": f"sqlite:///{tmp_path}/catalog.db",
    }.items():
        monkeypatch.setenv(k, v)


class FaultProxy:
    """Forwards HTTP to ``target_port``; request number k fails with 503 SlowDown when
    ``k % slowdown_every == 0`` and with a connection reset when ``k % reset_every == 0``.
    At most ``max_faults`` faults are injected, so the test stays bounded. A GET whose path contains one
    of ``outage`` always fails with 503 (an object that stays unavailable through every retry)."""

    def __init__(
        self,
        target_port: int,
        slowdown_every: int = 5,
        reset_every: int = 7,
        max_faults: int = 400,
        outage: tuple[str, ...] = (),
    ):
        self.target_port = target_port
        self.down = False  # every request fails with 503 while set (an endpoint outage)
        self.count = 0
        self.faults = {"slowdown": 0, "reset": 0, "outage": 0}
        self.in_flight = self.max_in_flight = 0  # requests being served at once
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    self._forward()
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1

            def _forward(self) -> None:
                body = self._body()
                with proxy.lock:
                    proxy.count += 1
                    k = proxy.count
                    budget = proxy.faults["slowdown"] + proxy.faults["reset"] < max_faults
                    fault = None
                    if proxy.down or (self.command == "GET" and any(o in self.path for o in outage)):
                        fault = "outage"
                    elif budget and k % reset_every == 0:
                        fault = "reset"
                    elif budget and k % slowdown_every == 0:
                        fault = "slowdown"
                    if fault:
                        proxy.faults[fault] += 1
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault in ("slowdown", "outage"):
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                # a HEAD has no body: its Content-Length is the object's size, passed on as the server gave it
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
