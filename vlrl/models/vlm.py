"""VisionLanguageModel = vision encoder -> projector -> causal LLM, by composition.

The processor writes ``num_image_tokens`` placeholder ids per image; :meth:`embed` replaces exactly those
positions with the projected image features, sample by sample, after checking that every sample has
``image_counts[i] * num_image_tokens`` placeholders (peer frameworks' "image features and image tokens do
not match" becomes an error naming the sample and both counts). Text-only samples have no placeholders
and no pixels; when a whole batch is text-only the encoder is skipped.

Every log-probability that a loss uses comes from :meth:`response_logprobs` (one code path for the
rollout-time reference and the train-time policy, so the log-ratio is exactly 0 when nothing moved).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from processors.collate import Batch
from vlrl.config import ModelConfig


class ImageTokenMismatchError(ValueError):
    """Placeholder tokens and image features disagree for a sample."""


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask -> (B, T) positions counting only real tokens (left padding safe)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class VisionLanguageModel(nn.Module):
    """Args:
    encoder: a VisionEncoder ((B, 3, H, W) -> (B, N, D_enc)).
    projector: (B, N, D_enc) -> (B, M, D_llm), with ``num_tokens`` = M.
    llm: a transformers causal LM.
    image_token_id: the placeholder id written by the processor.
    config: the self-contained ModelConfig (saved with the weights).
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, llm: nn.Module, image_token_id: int,
                 config: ModelConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.llm = llm
        self.image_token_id = int(image_token_id)
        self.config = config
        # "bf16": forwards (training, scoring, generation) under bf16 autocast while the weights, their
        # gradients and the optimizer state stay fp32 (the master copy); set by the stage (``precision``)
        self.precision = "fp32"

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    def autocast(self) -> torch.autocast:
        """The context every forward of this model runs in: bf16 autocast when ``precision`` is "bf16"
        (matmuls in bf16, softmax / norms / losses kept in fp32 by autocast's rules), else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @property
    def num_image_tokens(self) -> int:
        return int(self.projector.num_tokens)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, M, D_llm) image embeddings."""
        emb_dtype = self.llm.get_input_embeddings().weight.dtype
        feats = self.encoder(pixel_values.to(next(self.encoder.parameters()).dtype))  # (N, N_patch, D_enc)
        return self.projector(feats).to(emb_dtype)  # (N, M, D_llm)

    def _check_counts(self, is_img: torch.Tensor, image_counts: list[int] | None, sample_ids: list[str] | None) -> None:
        found = is_img.sum(dim=1).tolist()
        counts = image_counts if image_counts is not None else [0] * len(found)
        for i, (f, c) in enumerate(zip(found, counts)):
            if f != c * self.num_image_tokens:
                who = f"sample '{sample_ids[i]}'" if sample_ids else f"batch row {i}"
                raise ImageTokenMismatchError(
                    f"{who}: {f} image placeholder tokens but {c} image(s) x {self.num_image_tokens} tokens = "
                    f"{c * self.num_image_tokens} image features (was the prompt truncated, or the processor "
                    f"made for another model?)"
                )

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None, image_counts: list[int] | None,
              sample_ids: list[str] | None = None) -> torch.Tensor:
        """(B, T) ids + (N, 3, H, W) pixels -> (B, T, D) input embeddings with images scattered in."""
        embeds = self.llm.get_input_embeddings()(input_ids)  # (B, T, D)
        is_img = input_ids == self.image_token_id  # (B, T)
        self._check_counts(is_img, image_counts, sample_ids)
        if pixel_values is None or pixel_values.shape[0] == 0:
            if torch.is_grad_enabled() and self.training:
                # a text-only batch still touches encoder + projector (with weight 0) so that every process
                # under DDP reduces the same parameters whether or not its shard has images
                embeds = embeds + 0.0 * sum(p.sum() for p in self._vision_params())
            return embeds
        feats = self.encode_images(pixel_values)  # (N, M, D) in sample order
        # masked_scatter fills positions in row-major order: sample 0's images first, as collated
        return embeds.masked_scatter(is_img.unsqueeze(-1), feats.reshape(-1, feats.shape[-1]))

    def _vision_params(self) -> list[torch.Tensor]:
        return [p for p in [*self.encoder.parameters(), *self.projector.parameters()] if p.requires_grad]

    def forward(self, batch: Batch, **llm_kwargs):
        """Full forward on a collated batch. Returns the LLM's output (``.logits`` (B, T, V); ``.loss``
        when ``batch.labels`` is set: mean cross-entropy over response tokens)."""
        with self.autocast():
            embeds = self.embed(batch.input_ids, batch.pixel_values, batch.image_counts, batch.sample_ids)
            # with labels the causal LM computes the shifted cross-entropy over labelled tokens (IGNORE_INDEX
            # -100 elsewhere): vlrl.algos.sft.sft_loss, written out and tested by hand there
            return self.llm(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                            position_ids=position_ids_from_mask(batch.attention_mask), use_cache=False,
                            labels=batch.labels, **llm_kwargs)

    def response_logprobs(self, batch: Batch, with_entropy: bool = False,
                          temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs of the response tokens under this model (the one path every loss uses).

        Args:
            batch: a scoring batch (``response_mask`` set).
            with_entropy: also return the per-token entropy of the predictive distribution.
            temperature: score under softmax(logits / temperature), the distribution responses sampled at
                that temperature were drawn from (so RL on low-temperature rollouts stays on-policy).

        Returns:
            logp: (B, T-1) log pi(token_{t+1} | prefix) at response positions, 0 elsewhere.
            entropy: (B, T-1) at response positions (0 elsewhere), or None.
        """
        if batch.response_mask is None:
            raise ValueError("response_logprobs needs a scoring batch (collate_scoring)")
        logits = self.forward(batch).logits[:, :-1]  # (B, T-1, V)
        mask = batch.response_mask[:, 1:]  # (B, T-1) target token is a response token
        targets = batch.input_ids[:, 1:][mask]  # (K,)
        if temperature <= 0:
            raise ValueError(f"response_logprobs: temperature must be > 0, got {temperature}")
        scored = self.exclude_placeholder(logits[mask].float())  # (K, V): the distribution generate samples from
        logp_all = F.log_softmax(scored / temperature, dim=-1)  # (K, V), only the K scored positions
        logp = torch.zeros(mask.shape, dtype=torch.float32, device=logits.device)
        logp[mask] = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        entropy = None
        if with_entropy:
            entropy = torch.zeros_like(logp)
            finite = logp_all.masked_fill(torch.isinf(logp_all), 0.0)  # the placeholder's 0 * -inf counts as 0
            entropy[mask] = -(logp_all.exp() * finite).sum(-1)
        return logp, entropy

    def exclude_placeholder(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (..., V) with the image placeholder at -inf (in place; returned): a response never contains
        one, so sampling (``generate``) and scoring (``response_logprobs``) both use this distribution and
        RL's log-probs are those of the tokens as they were sampled."""
        logits[..., self.image_token_id] = float("-inf")
        return logits

    def num_parameters(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        parts = {"encoder": count(self.encoder), "projector": count(self.projector), "llm": count(self.llm)}
        return {**parts, "total": sum(parts.values())}
