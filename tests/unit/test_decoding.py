"""vlrl's Llama-family decoder computes what the model's own forward computes, and is chosen only where it can."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from processors import collate_generation
from tests.conftest import tiny_model_config
from tests.unit.test_model import mixed_samples
from vlrl.models import SamplingParams, build_vlm, generate
from vlrl.models.decoding import LlamaDecoder, TransformersDecoder, decoder_for, llama_unsupported
from vlrl.models.generation import cache_kwarg
from vlrl.models.vlm import position_ids_from_mask


def _run(model, batch, proc, decoder, **kw):
    p = SamplingParams(max_new_tokens=20, decoder=decoder, **kw)
    return generate(model, batch, p, proc.eos_token_id, generator=torch.Generator().manual_seed(4))


def test_llama_decoder_generates_the_tokens_and_logprobs_of_the_transformers_path(tiny):
    """Mixed 0/1/2-image prompts of different lengths (left padding), k rows per prompt and rows stopping
    at different steps (so rows leave the cache): greedy and sampled tokens equal, log-probs to 1e-5."""
    model, proc = tiny
    batch = collate_generation([proc.encode(s) for s in mixed_samples()], proc.pad_token_id)
    assert len(set(batch.attention_mask.sum(1).tolist())) > 1  # prompts really are padded
    stops = list(range(0, len(proc.tokenizer), 8))  # near-uniform random model: rows end at different steps
    for kw in ({"temperature": 0.0}, {"temperature": 1.0, "num_samples": 3, "stop_token_ids": stops}):
        ours, ref = _run(model, batch, proc, "llama", **kw), _run(model, batch, proc, "transformers", **kw)
        assert ours.tokens == ref.tokens and ours.finish_reasons == ref.finish_reasons
        for a, b in zip(ours.logprobs, ref.logprobs):
            assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)
    assert len({len(t) for t in ref.tokens}) > 1


def _hf(model_type: str, **extra):
    torch.manual_seed(0)
    conf = AutoConfig.for_model(model_type, vocab_size=96, hidden_size=64, intermediate_size=96,
                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                max_position_embeddings=128, **extra)
    return AutoModelForCausalLM.from_config(conf).eval()


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])  # qwen2: q/k/v biases; both with 2 kv heads of 4
def test_prefill_and_steps_match_the_models_forward_with_grouped_kv_heads(model_type):
    llm = _hf(model_type)
    if model_type == "qwen2":
        with torch.no_grad():  # transformers initialises biases at 0: make them count
            for layer in llm.model.layers:
                layer.self_attn.q_proj.bias.normal_(0, 0.5), layer.self_attn.k_proj.bias.normal_(0, 0.5)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    ids = torch.randint(1, 96, (2, 5), generator=torch.Generator().manual_seed(1))
    pos = position_ids_from_mask(mask)
    dec = LlamaDecoder(llm, reserve=3)
    ref = TransformersDecoder(llm, llm, cache_kwarg(type(llm)), reserve=3)
    embeds = llm.get_input_embeddings()(ids)
    with torch.no_grad():
        got, want = dec.prefill(embeds, mask, pos), ref.prefill(embeds, mask, pos)
        assert torch.allclose(got, want, atol=1e-5)
        rows = torch.tensor([1, 0, 1])  # repeat and reorder rows, as k samples per prompt do
        dec.select(rows), ref.select(rows)
        m, p = mask[rows], pos[rows, -1] + 1
        for t in range(3):
            tok = torch.tensor([3 + t, 7, 11 * t + 1])
            m = torch.cat([m, torch.ones(3, 1, dtype=m.dtype)], dim=1)
            got, want = dec.step(tok, m, p), ref.step(tok, m, p)
            assert torch.allclose(got, want, atol=1e-5), (t, (got - want).abs().max())
            p = p + 1
        with pytest.raises(RuntimeError, match="reserved"):
            dec.step(tok, torch.cat([m, torch.ones(3, 1, dtype=m.dtype)], dim=1), p)


def test_llama_decoder_under_bf16_autocast_is_close_to_the_transformers_path(tiny):
    model, proc = tiny
    batch = collate_generation([proc.encode(s) for s in mixed_samples()], proc.pad_token_id)
    model.precision = "bf16"
    try:
        ours, ref = (_run(model, batch, proc, d, temperature=0.0) for d in ("llama", "transformers"))
    finally:
        model.precision = "fp32"
    first = [a[0] - b[0] for a, b in zip(ours.logprobs, ref.logprobs)]
    assert max(abs(x) for x in first) < 0.05  # bf16 rounding, not a different model


def test_the_decoder_is_chosen_only_where_it_computes_the_same():
    llm = _hf("llama")
    key = cache_kwarg(type(llm))
    assert llama_unsupported(llm) is None
    assert isinstance(decoder_for(llm, "auto", llm, key, 4), LlamaDecoder)
    compiled = lambda **kw: llm(**kw)  # noqa: E731  (stands for torch.compile's callable)
    assert isinstance(decoder_for(llm, "auto", compiled, key, 4), TransformersDecoder)
    assert isinstance(decoder_for(llm, "transformers", llm, key, 4), TransformersDecoder)
    with pytest.raises(ValueError, match="decoder must be one of"):
        decoder_for(llm, "fast", llm, key, 4)
    assert "sliding" in llama_unsupported(_hf("mistral", sliding_window=16))
    assert "activation" in llama_unsupported(_hf("llama", hidden_act="gelu"))
    assert "not one of" in llama_unsupported(_hf("qwen3"))  # q/k norms: not the Llama layout
    from torch.distributed.fsdp import FSDPModule

    sharded = _hf("llama")  # what fully_shard does to a layer's class (its weights live only in its forward)
    layer = sharded.model.layers[0]
    layer.__class__ = type("FSDP" + type(layer).__name__, (FSDPModule, type(layer)), {})
    assert "sharded" in llama_unsupported(sharded)


def test_lora_wrapped_model_falls_back_to_its_own_forward():
    from vlrl.config import LoRAConfig
    from vlrl.models.lora import add_lora

    model, _ = build_vlm(tiny_model_config())
    add_lora(model, LoRAConfig(r=2, alpha=4.0))
    why = llama_unsupported(model.llm)
    assert why is not None and "LoRA" in why
    with pytest.raises(ValueError, match="LoRA"):
        LlamaDecoder(model.llm, reserve=2)



def test_an_unknown_rollout_decoder_is_an_error_when_the_config_loads():
    from tests.conftest import ROOT
    from vlrl.config import load_config
    from vlrl.stages import rl

    path = ROOT / "configs/tiny/rl.yaml"
    with pytest.raises(ValueError, match="rollout.decoder must be one of auto, llama, transformers, got 'fast'"):
        load_config(rl.RLConfig, path, ["rollout.decoder=fast"])
    assert load_config(rl.RLConfig, path, ["rollout.decoder=transformers"]).rollout.decoder == "transformers"
