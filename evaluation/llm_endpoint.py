"""One OpenAI-compatible Chat Completions endpoint that a suite names (a simulated caller's brain, a rubric's
judge), through the real openai client (the eval extra's; imported only when a suite uses one).

Failures become `LLMEndpointError`s that say which LLM failed, with the HTTP status and the error's type only:
some providers echo part of the key in their messages, and these end up in reports and CI logs.
"""

from __future__ import annotations

from voxfleet.evaluation.scenario_models import OpenAIBrain

TIMEOUT_S = 30.0


class LLMEndpointError(RuntimeError):
    """The endpoint gave no answer; the message carries no secret."""


class LLMEndpoint:
    def __init__(self, brain: OpenAIBrain, api_key: str, *, who: str):
        """`who`: whose LLM this is, for messages ("caller", "judge")."""
        from openai import AsyncOpenAI

        self._brain, self._who = brain, who
        self._client = AsyncOpenAI(base_url=brain.base_url, api_key=api_key, timeout=TIMEOUT_S, max_retries=1)

    async def reply(self, messages: list[dict[str, str]], *, max_tokens: int) -> str:
        from openai import APIError, APIStatusError

        try:
            response = await self._client.chat.completions.create(
                model=self._brain.model, messages=messages, temperature=self._brain.temperature,
                max_tokens=max_tokens)
        except APIStatusError as error:
            raise LLMEndpointError(f"the {self._who}'s LLM answered HTTP {error.status_code}"
                                   f" ({type(error).__name__})") from None
        except APIError as error:
            raise LLMEndpointError(f"the {self._who}'s LLM failed: {type(error).__name__}") from None
        choice = response.choices[0] if response.choices else None
        return (choice.message.content if choice is not None else "") or ""

    async def aclose(self) -> None:
        await self._client.close()
