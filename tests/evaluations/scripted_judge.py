"""A real OpenAI-compatible judge on 127.0.0.1 that answers from a script,
for the judge client, the runner and the throughput benchmark.

A script is a callable (prompt text, call number) → Reply; the call number
counts every POST to /v1/chat/completions from 1, across threads. A Reply is
text (HTTP 200 with usage), or an error status, optionally after `delay_s`.
Every request is recorded (prompt, Authorization header, body) so tests can
count calls and check what was sent.

    with scripted_judge(rate_limited(2, then=always("8 6"))) as judge:
        client = JudgeClient(judge.base_url, "judge", "sk-test", timeout_s=2, max_retries=3)

ThreadingHTTPServer with daemon threads and a deep accept queue: the
benchmark sends 32 requests at once, each held `latency_s` (200 ms)."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "scripted-judge"


@dataclass(frozen=True)
class Reply:
    text: str = ""
    status: int = 200
    delay_s: float = 0.0  # on top of the server's latency_s
    headers: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int | None = None  # None: one per 4 characters of the prompt, at least 1
    completion_tokens: int | None = None


Script = Callable[[str, int], Reply]


@dataclass(frozen=True)
class RecordedRequest:
    call: int
    path: str
    prompt: str
    authorization: str
    body: dict[str, Any]


# --- script helpers --------------------------------------------------------------

def always(text: str) -> Script:
    """The same reply text for every call."""
    return lambda prompt, call: Reply(text)


def score_reply(first: float, second: float, explanation: str = "Both answers were compared.") -> Reply:
    """A score-pair reply in the format the prompts ask for."""
    return Reply(f"{first:g} {second:g}\n{explanation}")


def failing(status: int, times: int, *, then: Script, retry_after_ms: int | None = 1,
            message: str = "scripted failure") -> Script:
    """`status` for the first `times` calls, then `then` (its call numbers
    start again from 1). `retry-after-ms: 1`
    by default: the SDK honours it, so tests do not sit through its backoff."""
    headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}

    def script(prompt: str, call: int) -> Reply:
        if call <= times:
            return Reply(message, status=status, headers=headers)
        return then(prompt, call - times)

    return script


def rate_limited(times: int, *, then: Script, retry_after_ms: int | None = 1) -> Script:
    """429 for the first `times` calls, then `then`."""
    return failing(429, times, then=then, retry_after_ms=retry_after_ms, message="Rate limit reached")


def too_slow(delay_s: float, text: str = "8 6") -> Script:
    """Answers only after `delay_s`: longer than a client's timeout."""
    return lambda prompt, call: Reply(text, delay_s=delay_s)


MALFORMED_REPLIES = ("I cannot decide between these answers.", "", "Scores: ten and nine", "[[D]]")


def malformed(texts: tuple[str, ...] = MALFORMED_REPLIES) -> Script:
    """Replies that follow neither format, in turn."""
    return lambda prompt, call: Reply(texts[(call - 1) % len(texts)])


def by_prompt(answer: Callable[[str], str]) -> Script:
    """Reply text decided by the prompt alone (e.g. which answer came first)."""
    return lambda prompt, call: Reply(answer(prompt))


# --- the server --------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen() backlog: bursts of concurrent connects
    allow_reuse_address = True

    def __init__(self, judge: ScriptedJudge) -> None:
        self.judge = judge
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    # A reply's headers and body go out in two writes; with Nagle's algorithm
    # the second waits for the client's delayed ACK (~40 ms on Linux), which
    # made a 200 ms judge answer in ~244 ms (bench/eval_throughput.py).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send_json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        judge = self.server.judge
        messages = body.get("messages") or []
        prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        call = judge._record(self.path, prompt, self.headers.get("Authorization", ""), body)
        try:
            reply = judge.script(prompt, call)
        except Exception as err:  # a broken script shows up as a 500 naming it
            reply = Reply(f"script error: {err!r}", status=500)
        # Waits end early when the server stops, so shutdown never hangs on them.
        if judge.stopping.wait(judge.latency_s + reply.delay_s):
            return
        try:
            if reply.status != 200:
                self._send_json(reply.status, {"error": {"message": reply.text, "type": "scripted", "code": None}},
                                reply.headers)
                return
            prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else max(1, len(prompt) // 4)
            completion_tokens = (reply.completion_tokens if reply.completion_tokens is not None
                                 else max(1, len(reply.text) // 4))
            self._send_json(200, {
                "id": f"chatcmpl-scripted-{call}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", MODEL),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": reply.text}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            }, reply.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout) before the reply


class ScriptedJudge:
    def __init__(self, script: Script, *, latency_s: float = 0.0) -> None:
        self.script = script
        self.latency_s = latency_s
        self.requests: list[RecordedRequest] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(self)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def _record(self, path: str, prompt: str, authorization: str, body: dict[str, Any]) -> int:
        with self._lock:
            call = len(self.requests) + 1
            self.requests.append(RecordedRequest(call, path, prompt, authorization, body))
            return call

    def start(self) -> None:
        # A short poll interval: shutdown() waits up to one interval.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="scripted-judge", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def scripted_judge(script: Script, *, latency_s: float = 0.0) -> Iterator[ScriptedJudge]:
    judge = ScriptedJudge(script, latency_s=latency_s)
    judge.start()
    try:
        yield judge
    finally:
        judge.stop()
