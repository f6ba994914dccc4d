"""MultimodalProcessor: a Sample (text + 0..n images) -> token ids with expanded placeholders + pixels.

Each image is written in the text as one ``<image>`` token, tokenized, and then expanded in id space into
``num_image_tokens`` copies (the number of embeddings the projector emits per image). Expanding after
tokenization means the tokenizer can never split, merge or drop a placeholder. A prompt is never
truncated (that would cut through an image); a too-long prompt is an error naming the sample. A too-long
*response* is truncated at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from processors.chat import FALLBACK_TEMPLATE, PlaceholderError, build_messages
from processors.image import HFImageTransform, ImageTransform, image_transform_from_dict, load_image

CONFIG_NAME = "processor_config.json"


class PromptTooLongError(ValueError):
    """A prompt (with its expanded images) longer than the model's maximum length."""


@dataclass
class Encoded:
    """One encoded sample.

    Attributes:
        input_ids: prompt (+ response) token ids, images expanded.
        prompt_len: number of prompt tokens; response tokens start here.
        pixel_values: (n_images, 3, H, W) or None for a text-only sample.
        num_images: n_images.
    """

    sample_id: str
    input_ids: list[int]
    prompt_len: int
    pixel_values: torch.Tensor | None
    num_images: int


class MultimodalProcessor:
    """Tokenizer + image transform for one model. Saved and loaded next to the model's weights.

    Args:
        tokenizer: any transformers tokenizer; ``image_token`` is added if missing.
        image_transform: the encoder's preprocessing.
        num_image_tokens: embeddings per image after the projector.
        max_length: maximum total tokens (prompt + response).
        system_prompt: default system message, if any.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_transform: ImageTransform | HFImageTransform,
        num_image_tokens: int,
        image_token: str = "<image>",
        max_length: int = 512,
        system_prompt: str | None = None,
    ) -> None:
        if image_token not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if tokenizer.chat_template is None:
            tokenizer.chat_template = FALLBACK_TEMPLATE
        self.tokenizer = tokenizer
        self.image_transform = image_transform
        self.num_image_tokens = int(num_image_tokens)
        self.image_token = image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        self.max_length = int(max_length)
        self.system_prompt = system_prompt

    # ------------------------------------------------------------------ ids
    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    def prompt_text(self, sample: Any, system_prompt: str | None = None) -> str:
        """The chat-formatted prompt, one ``<image>`` per image, ending where the assistant speaks."""
        messages = build_messages(sample, self.image_token, system_prompt or self.system_prompt)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _expand(self, ids: list[int]) -> list[int]:
        out: list[int] = []
        for t in ids:
            out.extend([t] * self.num_image_tokens if t == self.image_token_id else [t])
        return out

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def encode(
        self,
        sample: Any,
        response: str | Sequence[int] | None = None,
        *,
        add_eos: bool = True,
        system_prompt: str | None = None,
    ) -> Encoded:
        """Encode ``sample``'s prompt, optionally followed by a response.

        Args:
            response: text or token ids. For SFT/scoring pass the full response (``add_eos`` appends EOS);
                for generation that continues a partial response pass its ids with ``add_eos=False``.

        Raises:
            PlaceholderError, PromptTooLongError, ImageLoadError: each names the sample.
        """
        prompt_ids = self.prompt_ids(sample, system_prompt)
        resp_ids: list[int] = []
        if response is not None:
            resp_ids = self.tokenize(response) if isinstance(response, str) else list(response)
            if add_eos:
                resp_ids = resp_ids + [self.eos_token_id]
            resp_ids = resp_ids[: self.max_length - len(prompt_ids)]
        pixels = None
        if sample.images:
            pixels = torch.stack(
                [self.image_transform(load_image(src, sample_id=sample.id)) for src in sample.images]
            )
        return Encoded(sample.id, prompt_ids + resp_ids, len(prompt_ids), pixels, len(sample.images))

    def prompt_ids(self, sample: Any, system_prompt: str | None = None) -> list[int]:
        """The prompt's token ids, each ``<image>`` expanded to the image's tokens.

        Raises:
            PlaceholderError: the ``<image>`` tags do not match the images; PromptTooLongError: no room for
            a response within ``max_length``. Both name the sample.
        """
        prompt_ids = self.tokenize(self.prompt_text(sample, system_prompt))
        n_placeholders = prompt_ids.count(self.image_token_id)
        if n_placeholders != len(sample.images):
            raise PlaceholderError(
                f"sample '{sample.id}': {n_placeholders} '{self.image_token}' placeholder(s) in the prompt but "
                f"{len(sample.images)} image(s); put one '{self.image_token}' per image in the text (or none: "
                f"the images then go first), and keep it out of the chat template and system prompt"
            )
        prompt_ids = self._expand(prompt_ids)
        if len(prompt_ids) >= self.max_length:  # at least one response token must fit
            raise PromptTooLongError(
                f"sample '{sample.id}': prompt is {len(prompt_ids)} tokens ({len(sample.images)} image(s) x "
                f"{self.num_image_tokens} tokens included) but max_length is {self.max_length} (a response needs at least "
                f"one token); raise "
                f"model.max_length or use a token-reducing projector (prompts are never truncated)"
            )
        return prompt_ids

    def check(self, sample: Any, system_prompt: str | None = None) -> None:
        """Everything :meth:`encode` would reject about ``sample``, found without training on it: the
        placeholders, the prompt length and that every image decodes (run once per row at load time).

        Raises:
            PlaceholderError, PromptTooLongError, ImageLoadError: each names the sample.
        """
        self.prompt_ids(sample, system_prompt)
        for src in sample.images:
            if not isinstance(src, Image.Image):
                load_image(src, sample_id=sample.id)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(directory)
        cfg = {
            "image_transform": self.image_transform.to_dict(),
            "num_image_tokens": self.num_image_tokens,
            "image_token": self.image_token,
            "max_length": self.max_length,
            "system_prompt": self.system_prompt,
        }
        (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "MultimodalProcessor":
        directory = Path(directory)
        path = directory / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: '{directory}' is not a saved vlrl model/processor")
        cfg = json.loads(path.read_text())
        tok = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)  # never code from the folder
        return cls(tok, image_transform_from_dict(cfg.pop("image_transform")), **cfg)
