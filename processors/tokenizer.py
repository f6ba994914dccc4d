"""The embedded default's tokenizer, trained locally (no download) with the ``tokenizers`` library.

A small byte-level BPE learnt from the synthetic corpus: frequent words become single tokens, so prompts
and chains of thought stay short (a byte tokenizer makes the tiny model ~5x slower and it fails to learn;
see issue 3's measurements), while any text still round-trips exactly (no unknown tokens). Digits are
always split one per token so arithmetic sees place values consistently.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, EOS, IMAGE = "<pad>", "<|end|>", "<image>"
ROLES = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = [PAD, EOS, IMAGE, *ROLES]

# role markers, content, end-of-turn; the assistant turn is opened by add_generation_prompt.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``corpus``.

    Args:
        corpus: training texts (deterministic order gives a deterministic vocabulary).
        vocab_size: total size including the 256 byte symbols and the special tokens.

    Returns:
        A transformers fast tokenizer with pad/eos tokens, the ``<image>`` placeholder and a chat template.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        additional_special_tokens=[IMAGE, *ROLES],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast
