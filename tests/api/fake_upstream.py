"""A small OpenAI-protocol server for failure cases a real engine does not
produce on demand: a slow stream (holds a concurrency slot), a stream that
breaks after two chunks, and one that reports an error mid-stream."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _chunk(text: str, finish: str | None = None) -> bytes:
    event = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
             "choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}
    return f"data: {json.dumps(event)}\n\n".encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in ("slow", "breaks", "error-event")]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = request["model"]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            if model == "slow":
                for _ in range(100):
                    self.wfile.write(_chunk("x"))
                    self.wfile.flush()
                    time.sleep(0.1)
                self.wfile.write(_chunk("", "length") + b"data: [DONE]\n\n")
            elif model == "breaks":
                self.wfile.write(_chunk("par") + _chunk("tial"))
                self.wfile.flush()
                time.sleep(0.2)
                self.connection.shutdown(2)  # the engine died: no finish, no [DONE]
            else:
                self.wfile.write(_chunk("par") + _chunk("tial"))
                self.wfile.write(b'data: {"error": {"message": "CUDA out of memory", "type": "server_error"}}\n\n')
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the gateway hung up (e.g. its client went away)
        self.close_connection = True


@contextmanager
def fake_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
