"""The judge: any OpenAI-compatible chat endpoint, called through the
`openai` SDK's AsyncOpenAI.

The SDK does the retrying (openai 3.57, `_base_client.AsyncAPIClient.request`):
timeouts, connection errors and HTTP 408, 409, 429 and 5xx are retried up
to `max_retries` times; the wait honours `retry-after-ms` / `Retry-After`
when the server sends 0 < delay ≤ 120 s, otherwise it is exponential
(0.5 s × 2^n, at most 8 s, minus up to 25 % jitter). Other 4xx fail at once.

Whatever fails reaches the caller as JudgeFailed, whose message names what
happened (HTTP status and the server's message, timeout, connection) and
never contains the API key, even when a server echoes it back."""
from __future__ import annotations

import time
from dataclasses import dataclass

import openai

# vLLM and other local servers take any key; the SDK refuses an empty one
# (and would read OPENAI_API_KEY from the environment for None).
NO_KEY = "EMPTY"
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class JudgeReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int  # wall time of the call, retries and their waits included


class JudgeFailed(Exception):
    """The judge could not answer: retries exhausted, or a 4xx (other than
    429) that no retry would fix. `status` is the last HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class JudgeClient:
    def __init__(self, base_url: str, model: str, api_key: str, *, timeout_s: float, max_retries: int) -> None:
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._api_key = api_key
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or NO_KEY, max_retries=max_retries, timeout=timeout_s)

    def __repr__(self) -> str:  # never the key
        return f"JudgeClient({self.base_url!r}, {self.model!r})"

    async def __aenter__(self) -> JudgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"

    def _failure(self, err: openai.OpenAIError) -> JudgeFailed:
        tries = f"after {self.max_retries + 1} attempt{'s' if self.max_retries else ''}"
        if isinstance(err, openai.APITimeoutError):
            return JudgeFailed(f"the judge did not answer within the {self.timeout_s:g} s timeout ({tries})")
        if isinstance(err, openai.APIConnectionError):
            return JudgeFailed(f"could not connect to the judge at {self.base_url} ({tries})")
        if isinstance(err, openai.APIStatusError):
            retried = err.status_code in (408, 409, 429) or err.status_code >= 500
            # The SDK's message is "Error code: N - <server's message>".
            when = f" ({tries})" if retried else ""
            return JudgeFailed(f"the judge answered HTTP {err.status_code}{when}: {self._redact(str(err))}",
                               status=err.status_code)
        return JudgeFailed(f"the judge's reply could not be read: {self._redact(str(err))}")

    async def judge(self, prompt: str, *, max_tokens: int = 1024) -> JudgeReply:
        """One user message, temperature 0; raises JudgeFailed."""
        started = time.perf_counter()
        try:
            completion = await self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=max_tokens,
            )
        except openai.OpenAIError as err:
            # `from None`: the SDK's exception holds the request, headers included.
            raise self._failure(err) from None
        latency_ms = round((time.perf_counter() - started) * 1000)
        try:  # the SDK does not validate replies: a broken server gives odd objects
            choices = completion.choices
            text = (choices[0].message.content or "") if choices else None
            usage = completion.usage
            prompt_tokens = int(usage.prompt_tokens or 0) if usage else 0
            completion_tokens = int(usage.completion_tokens or 0) if usage else 0
        except (AttributeError, TypeError, ValueError, IndexError):
            raise JudgeFailed("the judge's reply is not a chat completion") from None
        if text is None:
            raise JudgeFailed("the judge's reply has no choices")
        return JudgeReply(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          latency_ms=latency_ms)

    async def close(self) -> None:
        await self._client.close()
