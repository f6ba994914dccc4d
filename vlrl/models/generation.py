"""Batched generation with a KV cache, for mixed text-only / image-text prompts.

The prompt batch is left-padded (``collate_generation``); its images are encoded once, the prompt is
prefilled once, and for ``num_samples = k`` the prefilled cache is repeated k times, so a prompt's image
and prompt cost are paid once, not k times. Rows that finish are dropped from the cache at once, so a
batch with a few long answers does not keep paying for the short ones. The image placeholder token is never
generated (it would desynchronise placeholders and features when the response is scored). A partial
response is continued simply by including its tokens in the prompt (``processor.encode(sample, partial_ids, add_eos=False)``).
"""

from __future__ import annotations

import functools
import inspect
import weakref
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from processors.collate import Batch, collate_generation
from vlrl.models.keyed_random import uniforms
from vlrl.models.decoding import DECODERS, decoder_for
from vlrl.models.vlm import VisionLanguageModel, position_ids_from_mask


@dataclass
class SamplingParams:
    """``temperature == 0`` means greedy. ``stop_token_ids`` defaults to the model's EOS."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    num_samples: int = 1
    stop_token_ids: list[int] = field(default_factory=list)
    repeat_max_period: int = 0  # > 0: stop a row whose last tokens repeat a block of <= this many tokens
    repeat_times: int = 4  # ... this many times in a row (finish reason "repeat")
    # run the LLM's prefill and decode steps through torch.compile (inductor): compiled once per model and
    # process (about a minute on a 2-core CPU), then far fewer per-op dispatches per decode step, which is
    # what a small model's decode time is made of (docs/results.md has the measured speed-ups)
    compile: bool = False
    # the LLM's decode loop: "auto" (vlrl's own Llama-family decoder where it applies and compile is off,
    # else the model's forward), "llama" (that decoder or an error), "transformers" (the model's forward):
    # vlrl.models.decoding
    decoder: str = "auto"

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got '{self.decoder}'")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.num_samples < 1:
            raise ValueError(f"the number of samples per prompt (n) must be at least 1, got {self.num_samples}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be >= 0 and top_p in (0, 1], got {self.temperature} / {self.top_p}")


@dataclass
class GenerationOutput:
    """Row r (of B * k) is sample ``r % k`` of prompt ``prompt_index[r]``.

    Attributes:
        tokens: generated ids per row, the stop token included when there was one.
        logprobs: per generated token, its log-prob under the distribution it was sampled from:
            softmax(logits / temperature) (temperature 1 for greedy), before top-p truncation; what
            ``VisionLanguageModel.response_logprobs(..., temperature)`` gives for it.
        finish_reasons: "stop" (a stop token), "repeat" (a repeated n-gram loop was cut), "length"
            (max_new_tokens reached) or, from ``generate_texts``, "context" (prompt + response filled the
            processor's ``max_length``: nothing more can be scored or continued).
        prompt_index: the prompt row each output row belongs to.
        texts: each row decoded, from ``generate_texts``.
    """

    tokens: list[list[int]]
    logprobs: list[list[float]]
    finish_reasons: list[str]
    prompt_index: list[int]
    texts: list[str] = field(default_factory=list)  # decoded rows (``generate_texts`` only)

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)


def is_looping(seq: list[int], max_period: int, times: int) -> bool:
    """True if ``seq`` ends with some block of 1..max_period tokens repeated ``times`` times in a row."""
    for p in range(1, max_period + 1):
        if len(seq) < p * times:
            return False  # longer periods need even more tokens
        if times > 1 and seq[-1] != seq[-1 - p]:  # cheap test first: most steps fail it
            continue
        if seq[-p * times:] == seq[-p:] * times:
            return True
    return False


def draw(probs: torch.Tensor, generator: torch.Generator | None = None, u: torch.Tensor | None = None) -> torch.Tensor:
    """(B, V) probabilities -> (B,) one token per row by inverse-CDF sampling: one uniform number per row
    (``u`` (B,) if given, else from ``generator``) and a search in the row's cumulative sum. The same
    distribution as ``torch.multinomial`` (a token of probability 0 is never drawn), about 3x faster on
    CPU, which draws V random numbers per row."""
    cdf = probs.cumsum(-1)  # (B, V)
    if u is None:
        u = torch.rand(probs.shape[0], generator=generator, device=probs.device)
    u = u.to(cdf.device, cdf.dtype)[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_max(probs.shape[-1] - 1).squeeze(-1)


def sample_next(logits: torch.Tensor, temperature: float, top_p: float,
                generator: torch.Generator | None = None, u: torch.Tensor | None = None) -> torch.Tensor:
    """(B, V) logits -> (B,) next tokens: argmax if temperature == 0, else nucleus sampling (with the
    uniforms ``u`` (B,) when given, see ``draw``)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = F.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token is always kept)
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return draw(probs, generator, u)


def _loop_mask(history: list[list[int]], rows: torch.Tensor, tok: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    out = []
    for r, t in zip(rows.tolist(), tok.tolist()):
        history[r].append(t)
        out.append(is_looping(history[r], params.repeat_max_period, params.repeat_times))
    return torch.tensor(out, dtype=torch.bool, device=tok.device)


@functools.lru_cache(maxsize=None)
def cache_kwarg(llm_class: type) -> str:
    """The keyword a causal LM's forward takes its KV cache under: ``cache`` in transformers >= 5 (where
    ``past_key_values`` is deprecated, with a warning on every call, and goes away in 5.40), else
    ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(llm_class.forward).parameters else "past_key_values"


_COMPILED: "weakref.WeakKeyDictionary[torch.nn.Module, Callable]" = weakref.WeakKeyDictionary()
COMPILE_BACKEND = "inductor"


def llm_forward(llm: torch.nn.Module, compile: bool) -> Callable:
    """The callable generation runs the LLM through: the module itself, or its ``torch.compile``d forward
    (dynamic shapes: batch, prompt and cache lengths vary without recompiling; kept per module, outside
    its attributes, so that nothing compiled reaches a ``state_dict``). Parameters are graph inputs, so an
    optimizer step between two calls is seen by the next one."""
    if not compile:
        return llm
    if llm not in _COMPILED:
        # its forward, not the module: hooks on the LLM module itself are not run (those of its layers are
        # traced in); hooks with side effects break the graph and cost more than the compile saves
        _COMPILED[llm] = torch.compile(llm.forward, dynamic=True, backend=COMPILE_BACKEND)
    return _COMPILED[llm]


def _prefill(model: VisionLanguageModel, batch: Batch, counts: list[int], decoder) -> tuple:
    """Encode images and prefill the prompts once; repeat prompt i's cached row ``counts[i]`` times.
    Returns (last logits (R, V), attention mask (R, T), next positions (R,), prompt index (R,)),
    R = sum(counts)."""
    mask = batch.attention_mask
    pos = position_ids_from_mask(mask)
    embeds = model.embed(batch.input_ids, batch.pixel_values, batch.image_counts, batch.sample_ids)
    logits, next_pos = decoder.prefill(embeds, mask, pos), pos[:, -1] + 1
    index = torch.repeat_interleave(torch.arange(len(counts), device=mask.device),
                                    torch.tensor(counts, device=mask.device))
    if any(c != 1 for c in counts):
        decoder.select(index)
        logits, mask, next_pos = logits[index], mask[index], next_pos[index]
    return logits, mask, next_pos, index


@torch.no_grad()
def generate(
    model: VisionLanguageModel,
    batch: Batch,
    params: SamplingParams,
    eos_token_id: int,
    generator: torch.Generator | None = None,
    on_tokens: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    samples_per_prompt: list[int] | None = None,
    max_new_per_prompt: list[int] | None = None,
    row_keys: Sequence[int] | None = None,
) -> GenerationOutput:
    """Generate ``params.num_samples`` continuations for each prompt of a left-padded batch.

    Args:
        batch: from ``collate_generation`` (left padding), on the model's device.
        on_tokens: called every step with (rows (A,), tokens (A,)) of the still-active rows (streaming).
        samples_per_prompt: per prompt, how many continuations (overrides ``num_samples``); the rows of
            a prompt are consecutive in the output.
        max_new_per_prompt: per prompt, its own new-token cap (overrides ``max_new_tokens``), so
            continued partial rollouts and new prompts share one generation loop.
        row_keys: per output row, a 32-bit key: the row's step-t uniform is ``uniforms(key, t)``
            (``vlrl.models.keyed_random``) instead of the generator's next number, so its tokens do not
            depend on the other rows of the batch (rollouts on any number of processes agree).
    """
    was_training = model.training
    model.eval()
    try:
        with model.autocast():  # bf16 under precision: bf16, as the scoring forward
            return _decode(model, batch, params, eos_token_id, generator, on_tokens, samples_per_prompt,
                           max_new_per_prompt, row_keys)
    finally:
        model.train(was_training)


def _decode(model: VisionLanguageModel, batch: Batch, params: SamplingParams, eos_token_id: int, generator,
            on_tokens, samples_per_prompt, max_new_per_prompt, row_keys) -> GenerationOutput:
    """The body of :func:`generate` (same arguments): prefill, then one decode step per new token."""
    stop = torch.tensor(params.stop_token_ids or [eos_token_id], device=batch.input_ids.device)
    B = batch.input_ids.shape[0]
    counts = samples_per_prompt or [params.num_samples] * B
    caps_per_prompt = max_new_per_prompt or [params.max_new_tokens] * B
    max_new = max(caps_per_prompt)
    decoder = decoder_for(model.llm, params.decoder, llm_forward(model.llm, params.compile),
                          cache_kwarg(type(model.llm)), max_new)
    logits, mask, next_pos, index = _prefill(model, batch, counts, decoder)
    n_rows = logits.shape[0]
    caps = torch.tensor(caps_per_prompt, device=logits.device)[index]  # (R,)
    rows = torch.arange(n_rows, device=logits.device)  # active row -> output row
    prompt_len = mask.shape[1]  # the mask of every step to come, allocated once: step s sees prompt + s + 1
    mask = torch.cat([mask, mask.new_ones((n_rows, max_new))], dim=1)
    toks = torch.zeros((n_rows, max_new), dtype=torch.long, device=logits.device)
    lps = torch.zeros((n_rows, max_new), dtype=torch.float32, device=logits.device)
    lengths = torch.zeros(n_rows, dtype=torch.long, device=logits.device)
    stopped = torch.zeros(n_rows, dtype=torch.bool, device=logits.device)
    looped = torch.zeros(n_rows, dtype=torch.bool, device=logits.device)
    history: list[list[int]] = [[] for _ in range(n_rows)] if params.repeat_max_period else []
    keys = None if row_keys is None else torch.tensor(list(row_keys), dtype=torch.long, device=logits.device)
    # every row's uniform of every step, hashed at once (one small table, not ~25 integer ops per step)
    table = None if keys is None else uniforms(keys[:, None], torch.arange(max_new, device=keys.device))
    for step in range(max_new):
        model.exclude_placeholder(logits)  # a response never contains an image placeholder
        u = None if table is None else table[rows, step]
        tok, lps[rows, step] = _choose(logits, params, generator, u)
        toks[rows, step] = tok
        lengths[rows] = step + 1
        if on_tokens is not None:
            on_tokens(rows, tok)
        done = _ended(tok, rows, step, stop, caps, history, params, stopped, looped)
        keep = (~done).nonzero().squeeze(-1)
        if keep.numel() == 0 or step == max_new - 1:
            break
        if keep.numel() < rows.numel():  # drop finished rows from the cache
            decoder.select(keep)
            rows, tok, mask, next_pos = rows[keep], tok[keep], mask[keep], next_pos[keep]
        logits = decoder.step(tok, mask[:, : prompt_len + step + 1], next_pos)
        next_pos = next_pos + 1
    return _output(toks, lps, lengths, stopped, looped, index)


def _ended(tok: torch.Tensor, rows: torch.Tensor, step: int, stop: torch.Tensor, caps: torch.Tensor,
           history: list[list[int]], params: SamplingParams, stopped: torch.Tensor, looped: torch.Tensor) -> torch.Tensor:
    """(A,) True where an active row ends at this step: a stop token (marked in ``stopped``), a repeated
    n-gram loop when detection is on (marked in ``looped``), or its own new-token cap ("length")."""
    done = torch.isin(tok, stop)
    stopped[rows[done]] = True
    if history:
        loop = _loop_mask(history, rows, tok, params)
        looped[rows[loop & ~done]] = True
        done = done | loop
    return done | (caps[rows] <= step + 1)


def _choose(logits: torch.Tensor, params: SamplingParams, generator,
            u: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, V) logits -> (A,) next tokens and their (A,) log-probs under softmax(logits / temperature)
    (temperature 1 for greedy); without top-p one log_softmax serves both. ``u``: the rows' uniforms."""
    scale = params.temperature if params.temperature > 0 else 1.0  # greedy: the untempered policy
    logp = F.log_softmax(logits.float() if scale == 1.0 else logits.float() / scale, dim=-1)
    if params.temperature > 0 and params.top_p >= 1.0:
        tok = draw(logp.exp(), generator, u)
    else:
        tok = sample_next(logits, params.temperature, params.top_p, generator, u)
    return tok, logp.gather(-1, tok[:, None]).squeeze(-1)


def _output(toks, lps, lengths, stopped, looped, index) -> GenerationOutput:
    lengths_l, toks_l, lps_l = lengths.tolist(), toks.tolist(), lps.tolist()
    return GenerationOutput(
        tokens=[t[:n] for t, n in zip(toks_l, lengths_l)],
        logprobs=[lp[:n] for lp, n in zip(lps_l, lengths_l)],
        finish_reasons=["stop" if s else "repeat" if r else "length" for s, r in zip(stopped.tolist(), looped.tolist())],
        prompt_index=index.tolist(),
    )


def generate_texts(model: VisionLanguageModel, processor, samples: Sequence, params: SamplingParams, *,
                   prefixes: Sequence[Sequence[int] | None] | None = None, counts: Sequence[int] | None = None,
                   caps: Sequence[int] | None = None, system_prompt: str | None = None, batch_size: int = 32,
                   generator: torch.Generator | None = None, on_tokens: Callable | None = None,
                   on_batch: Callable[[int], None] | None = None,
                   row_keys: Sequence[int] | None = None) -> GenerationOutput:
    """The one batched generation sequence (evaluation, curation probes, rollouts, ``Predictor``): encode
    each sample's prompt (followed by its partial response ``prefixes[i]``, if any), collate left-padded
    batches of ``batch_size`` prompts, generate, decode.

    Args:
        counts / caps: per sample, how many responses and its new-token cap (default: ``params``).
        on_tokens: streaming callback of ``generate``; on_batch: called with each batch's prompt count.
        row_keys: per output row (``sum(counts)`` of them), its key for ``generate``'s keyed sampling.

    Returns:
        one GenerationOutput over all samples (``prompt_index`` indexes ``samples``; a sample's rows are
        consecutive), with ``texts``.
    """
    prefixes = prefixes or [None] * len(samples)
    out = GenerationOutput([], [], [], [], [])
    n_rows = list(counts) if counts is not None else [params.num_samples] * len(samples)
    for start in range(0, len(samples), batch_size):
        sl = slice(start, start + batch_size)
        first = sum(n_rows[:start])
        keys = None if row_keys is None else row_keys[first : first + sum(n_rows[sl])]
        enc = [processor.encode(s, list(p) if p else None, add_eos=False, system_prompt=system_prompt)
               for s, p in zip(samples[sl], prefixes[sl])]
        batch = collate_generation(enc, processor.pad_token_id).to(model.device)
        # never past max_length: a longer response could not be encoded again for scoring or continuation
        room = [processor.max_length - len(e.input_ids) for e in enc]
        want = list(caps[sl]) if caps is not None else [params.max_new_tokens] * len(enc)
        part = generate(model, batch, params, processor.eos_token_id, generator, on_tokens,
                        samples_per_prompt=list(counts[sl]) if counts is not None else None,
                        max_new_per_prompt=[max(1, min(c, r)) for c, r in zip(want, room)], row_keys=keys)
        out.tokens += part.tokens
        out.logprobs += part.logprobs
        out.finish_reasons += ["context" if why == "length" and len(t) >= room[i] else why
                               for t, why, i in zip(part.tokens, part.finish_reasons, part.prompt_index)]
        out.prompt_index += [start + i for i in part.prompt_index]
        out.texts += [processor.decode(t) for t in part.tokens]
        if on_batch is not None:
            on_batch(len(enc))
    return out
