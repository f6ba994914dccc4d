"""Prompt formatting: messages from a Sample, image placeholders, the chat template."""

from __future__ import annotations

from typing import Any

# Used when a tokenizer has no chat template of its own (a base LLM).
FALLBACK_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{ m['role'] | capitalize }}: {{ m['content'] }}\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}Assistant:{%- endif -%}"
)


class PlaceholderError(ValueError):
    """Image placeholders in the text do not match the sample's images."""


def build_messages(sample: Any, image_token: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """Turn a Sample into chat messages with exactly one ``image_token`` per image.

    If the text has no placeholders, the images go first in the (first) user turn, LLaVA style; if it has
    some, they stay where they are (``MultimodalProcessor.encode`` checks their number).

    Raises:
        PlaceholderError: images but no user message, or an assistant turn last.
    """
    n = len(sample.images)
    if sample.messages:
        messages = [dict(m) for m in sample.messages]
        if messages[-1].get("role") == "assistant":
            raise PlaceholderError(
                f"sample '{sample.id}': the last message is an assistant turn; put the target in 'response'"
            )
    else:
        messages = [{"role": "user", "content": sample.question or ""}]
    found = sum(m.get("content", "").count(image_token) for m in messages)
    if found == 0 and n > 0:
        first_user = next((m for m in messages if m.get("role") == "user"), None)
        if first_user is None:
            raise PlaceholderError(f"sample '{sample.id}': has {n} image(s) but no user message to put them in")
        first_user["content"] = image_token * n + "\n" + first_user["content"]
    # a count that still differs from the images is caught once, after tokenization, by
    # MultimodalProcessor.encode (where the chat template and system prompt are included too)
    if system_prompt and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages
