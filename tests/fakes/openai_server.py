"""A local OpenAI-compatible Chat Completions server: real HTTP, real SSE streaming, tool_calls deltas.

What it answers is scripted (`Script`): a plain reply, or a tool call when the request offers that tool, then a
reply that quotes the tool's result once the conversation carries it. The first token waits `ttft_ms`, later
tokens `token_delay_ms` apart, so it doubles as "an LLM with a fixed TTFT" for benchmarks.

    fake = start_fake_openai(ttft_ms=200)   # fake.url == "http://127.0.0.1:<port>/v1"
    ...
    fake.stop()
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.server_thread import ServerThread


@dataclass
class ToolCallPlan:
    name: str
    arguments: dict[str, Any]


@dataclass
class Script:
    """How the fake model answers. `{tool_result}` in after_tool is the content of the last tool message."""

    reply: str = "Hello! How can I help you today?"
    tool_call: ToolCallPlan | None = None
    after_tool: str = "Here is what I found: {tool_result}"

    def answer(self, body: dict[str, Any]) -> tuple[str, ToolCallPlan | None]:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            return self.after_tool.format(tool_result=_tool_text(last.get("content"))), None
        offered = {tool.get("function", {}).get("name") for tool in body.get("tools") or []}
        if self.tool_call is not None and self.tool_call.name in offered:
            return "", self.tool_call
        return self.reply, None


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _tool_text(content: Any) -> str:
    """A tool message's content; a JSON-encoded string (how Pipecat sends a text result) is unwrapped."""
    text = _text(content)
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _tokens(text: str) -> list[str]:
    """Word-sized tokens with their leading spaces, the way a real model streams."""
    return re.findall(r"\s*\S+", text) or [text]


@dataclass
class FakeOpenAI:
    ttft_ms: float = 0.0
    token_delay_ms: float = 0.0
    script: Script = field(default_factory=Script)
    api_key: str | None = None  # when set, requests must carry `Authorization: Bearer <api_key>`
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    _server: ServerThread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"{self._server.url}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        return app

    def start(self) -> "FakeOpenAI":
        self._server = ServerThread(self.app()).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model",
                                                              "created": 0, "owned_by": "voxfleet-tests"}]})

    def _unauthorised(self, request: web.Request) -> web.Response | None:
        if self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        return web.json_response({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                            "code": "invalid_api_key"}}, status=401)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        refused = self._unauthorised(request)
        if refused is not None:
            return refused
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        text, tool_call = self.script.answer(body)
        model = body.get("model", "fake-model")
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        prompt_tokens = sum(len(_text(m.get("content")).split()) for m in body.get("messages") or [])
        completion_tokens = len(_tokens(text)) if text else 8
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        await asyncio.sleep(max(0.0, self.ttft_ms / 1000 - (time.monotonic() - received)))
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if tool_call:
                message["tool_calls"] = [{"id": "call_fake_1", "type": "function", "function": {
                    "name": tool_call.name, "arguments": json.dumps(tool_call.arguments)}}]
            return web.json_response({
                "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if tool_call else "stop"}], "usage": usage})

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def send(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> None:
            chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model, "choices": [] if delta is None else [
                         {"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        if tool_call:
            arguments = json.dumps(tool_call.arguments)
            await send({"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                "function": {"name": tool_call.name, "arguments": ""}}]})
            for start in range(0, len(arguments), 8):  # arguments arrive in fragments, as from OpenAI
                await self._pause()
                await send({"tool_calls": [{"index": 0, "function": {"arguments": arguments[start:start + 8]}}]})
            await send({}, "tool_calls")
        else:
            await send({"role": "assistant", "content": ""})
            for index, token in enumerate(_tokens(text)):
                if index:
                    await self._pause()
                await send({"content": token})
            await send({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            await send(None, usage=usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _pause(self) -> None:
        if self.token_delay_ms:
            await asyncio.sleep(self.token_delay_ms / 1000)


def start_fake_openai(*, ttft_ms: float = 0.0, token_delay_ms: float = 0.0, script: Script | None = None,
                      api_key: str | None = None) -> FakeOpenAI:
    """A running fake; `.url` is its OpenAI base URL (…/v1), `.requests` the bodies it received."""
    return FakeOpenAI(ttft_ms=ttft_ms, token_delay_ms=token_delay_ms, script=script or Script(),
                      api_key=api_key).start()
