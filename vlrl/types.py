"""The dataclasses that are the contracts between components.

A :class:`Sample` is what every stage consumes: one question (or chat), its 0..n images, and what is
known about it. Images are *references* (a path, raw bytes or a PIL image) and are decoded lazily, batch
by batch, by ``processors.image.load_image`` so a large image set never sits in host RAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from PIL import Image

ImageSource = Union[str, Path, bytes, Image.Image]

MODALITIES = ("text", "image", "text_rendered")


@dataclass
class Sample:
    """One prompt with its images and labels.

    Attributes:
        id: unique id (also used in every error message about this sample).
        question: the user's question; may contain ``<image>`` placeholders to fix where images go,
            otherwise the images are put before the question.
        messages: alternatively a chat ``[{"role", "content"}]``; the prompt is all of it (a trailing
            assistant turn is not allowed: use ``response``).
        images: 0..n image references (empty = text-only sample).
        answer: reference final answer (for verifiers), if known.
        response: target response for supervised training, if any.
        domain: topic tag ("counting", "arithmetic", ...).
        difficulty: difficulty level (int, higher = harder) or None.
        modality: "text" | "image" | "text_rendered"; derived from ``images`` when left empty.
        pair_id: links the same problem in different modalities (text vs rendered image).
        meta: anything else (scene specs, captions, pass rates, source row).
    """

    id: str
    question: str | None = None
    messages: list[dict[str, str]] | None = None
    images: list[ImageSource] = field(default_factory=list)
    answer: str | None = None
    response: str | None = None
    domain: str = "general"
    difficulty: int | None = None
    modality: str = ""
    pair_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.question is None and not self.messages:
            raise ValueError(f"sample '{self.id}': needs a 'question' or 'messages'")
        if not self.modality:
            self.modality = "image" if self.images else "text"
        if self.modality not in MODALITIES:
            raise ValueError(f"sample '{self.id}': modality '{self.modality}' is not one of {MODALITIES}")
        if self.modality != "text" and not self.images:
            raise ValueError(f"sample '{self.id}': modality '{self.modality}' but no images")

    @property
    def num_images(self) -> int:
        return len(self.images)


@dataclass
class PromptRecord:
    """All n responses to one prompt, scored.

    Attributes:
        correct: per response, verified correct.
        answers: per response, the extracted final answer (None if none).
        lengths: per response, number of generated tokens.
        errors: per response, the verifier error message or None.
    """

    id: str
    modality: str
    domain: str
    difficulty: int | None
    pair_id: str | None
    correct: list[bool]
    answers: list[str | None]
    lengths: list[int]
    errors: list[str | None] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
