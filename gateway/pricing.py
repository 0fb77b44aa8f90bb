"""The platform's price list: what a call costs the tenant, priced by the gateway (never by the worker).

A call is billed for its minutes on the platform plus the provider units its worker reported (api/call_report.py
CallUsage): speech-to-text audio minutes, LLM prompt and completion tokens per thousand, text-to-speech characters
per thousand. Every price is an integer in micro-units (millionths) of one currency, and the cost is computed in
integers: the terms are summed over one common denominator and rounded once, half up, to a whole micro-unit, so
no float ever decides a tenant's bill and adding calls up day by day gives the same total as pricing them together
(to the micro-unit each). Durations are billed by the millisecond, not by started minute.

Set by the platform team: gateway setting `prices` (VOXFLEET_PRICES, JSON with the camelCase names below; the
chart's `gateway.prices`). A worker's report carries no price and no cost: a worker may be made to do anything
its spec allows, and must not choose what a call costs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from voxfleet.api.call_report import CallUsage

MICROS_PER_UNIT = 1_000_000  # micro-units in one unit of the currency (one dollar, one euro)
MICROS_PER_CENT = MICROS_PER_UNIT // 100
_MS_PER_MINUTE = 60_000
_PER_THOUSAND = 1_000
# Every term as a numerator over 60,000 (ms per minute): per-thousand prices are scaled by 60,000 / 1,000 = 60.
_DENOMINATOR = _MS_PER_MINUTE
_THOUSAND_SCALE = _MS_PER_MINUTE // _PER_THOUSAND
_MAX_PRICE = 1_000_000_000  # 1,000 units of the currency per minute or per thousand: a typo, not a price, above


def _price(default: int, description: str, alias: str | None = None) -> int:
    return Field(default=default, ge=0, le=_MAX_PRICE, alias=alias,
                 description=f"{description} (micro-units of the currency).")


class PriceList(BaseModel):
    """Prices in micro-units (millionths) of `currency`; 0 makes a unit free."""

    # "1k" stays lower-case in the JSON names (to_camel would write "1K"): the chart's values use them as written.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code every price is in.")
    platform_per_minute_micros: int = _price(10_000, "Per minute of call time on the platform")
    stt_per_minute_micros: int = _price(4_300, "Per minute of caller audio sent to speech-to-text")
    llm_prompt_per_1k_tokens_micros: int = _price(150, "Per thousand LLM prompt (input) tokens",
                                                  alias="llmPromptPer1kTokensMicros")
    llm_completion_per_1k_tokens_micros: int = _price(600, "Per thousand LLM completion (output) tokens",
                                                      alias="llmCompletionPer1kTokensMicros")
    tts_per_1k_characters_micros: int = _price(30_000, "Per thousand characters sent to text-to-speech",
                                                 alias="ttsPer1kCharactersMicros")

    def cost_micros(self, usage: CallUsage, call_ms: int) -> int:
        """What one call costs, in micro-units of `currency`: exact integers, rounded once (half up)."""
        if call_ms < 0:
            raise ValueError("call_ms must not be negative")
        numerator = (self.platform_per_minute_micros * call_ms
                     + self.stt_per_minute_micros * usage.stt_ms
                     + self.llm_prompt_per_1k_tokens_micros * usage.llm_prompt_tokens * _THOUSAND_SCALE
                     + self.llm_completion_per_1k_tokens_micros * usage.llm_completion_tokens * _THOUSAND_SCALE
                     + self.tts_per_1k_characters_micros * usage.tts_characters * _THOUSAND_SCALE)
        return (numerator + _DENOMINATOR // 2) // _DENOMINATOR


def decimal_amount(micros: int) -> str:
    """Micro-units as a decimal string with six places ("1.250000"): exact, for people and for JSON readers that
    would turn a large integer into a float."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_UNIT)
    return f"{sign}{whole}.{fraction:06d}"
