"""Answer questions about 0..n images with a saved model: the Python face of ``vlrl infer``.

    from vlrl import Predictor
    p = Predictor.load("runs/demo/warmup")
    p.answer("How many shapes are there?", images=["scene.png"])
    p.answer("What is 3 + 4?")                                   # text only
    p.answer("<image> and <image>: which has more shapes?", images=["a.png", "b.png"])
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from processors.processor import MultimodalProcessor
from vlrl.models.builder import load_pretrained
from vlrl.models.generation import SamplingParams, generate_texts
from vlrl.models.vlm import VisionLanguageModel
from vlrl.types import ImageSource, Sample


class Predictor:
    """A model and its processor, ready to answer."""

    def __init__(self, model: VisionLanguageModel, processor: MultimodalProcessor) -> None:
        self.model, self.processor = model, processor

    @classmethod
    def load(cls, directory: str, device: str | None = None) -> "Predictor":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, processor = load_pretrained(directory, device=device)
        return cls(model.eval(), processor)

    def answer(
        self,
        question: str,
        images: Sequence[ImageSource] = (),
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        system_prompt: str | None = None,
        stream: Callable[[str], None] | None = None,
        seed: int | None = None,
    ) -> str:
        """Answer one question; ``stream`` receives text pieces as they are generated."""
        sample = Sample(id="query", question=question, images=list(images))
        streamer = _TextStreamer(self.processor, stream) if stream is not None else None
        text = self.answer_samples([sample], max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                   system_prompt=system_prompt, on_tokens=streamer, seed=seed)[0]
        if streamer is not None:
            streamer.finish(text)
        return text

    def answer_samples(self, samples: Sequence[Sample], *, batch_size: int = 32, max_new_tokens: int = 128,
                       temperature: float = 0.0, top_p: float = 1.0, system_prompt: str | None = None,
                       on_tokens=None, seed: int | None = None) -> list[str]:
        """Answers for many samples (mixed text-only and image-text), in batches."""
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        gen = torch.Generator(device=self.model.device).manual_seed(seed) if seed is not None else None
        out = generate_texts(self.model, self.processor, samples, params, system_prompt=system_prompt,
                             batch_size=batch_size, generator=gen, on_tokens=on_tokens)
        return out.texts


class _TextStreamer:
    """Turns row 0's generated ids into text deltas (decoding the whole prefix keeps multi-byte chars whole)."""

    def __init__(self, processor: MultimodalProcessor, sink: Callable[[str], None]) -> None:
        self.processor, self.sink, self.ids, self.shown = processor, sink, [], ""

    def __call__(self, rows: torch.Tensor, tokens: torch.Tensor) -> None:
        hit = (rows == 0).nonzero()
        if hit.numel() == 0:
            return
        self.ids.append(int(tokens[hit[0, 0]]))
        text = self.processor.decode(self.ids)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            return
        self.sink(text[len(self.shown):])
        self.shown = text

    def finish(self, text: str) -> None:
        """Emit what was held back (a trailing incomplete byte sequence decodes as U+FFFD in the end)."""
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.sink(text[len(self.shown):])
