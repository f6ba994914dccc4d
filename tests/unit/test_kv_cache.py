"""The in-place KV cache behaves as transformers' DynamicLayer, and generation with it is unchanged."""

import torch
from transformers.cache_utils import DynamicLayer

from processors import collate_generation
from tests.unit.test_model import mixed_samples
from vlrl.models import SamplingParams, generate
from vlrl.models import decoding
from vlrl.models.kv_cache import PreallocatedLayer, decode_cache


def _kv(b, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, n, 4, generator=g), torch.randn(b, 2, n, 4, generator=g)


def test_layer_matches_dynamic_layer_through_updates_selects_repeats_and_growth():
    ours, ref = PreallocatedLayer(reserve=3), DynamicLayer()
    steps = [("update", 5), ("update", 1), ("select", torch.tensor([2, 0, 0])), ("update", 1), ("repeat", 2),
             ("update", 1), ("update", 4), ("crop", -2), ("update", 1)]  # 5 + 3 reserved: the 4-token update grows
    for i, (op, arg) in enumerate(steps):
        if op == "update":
            k, v = _kv(ref.keys.shape[0] if ref.is_initialized else 3, arg, seed=i)
            a, b = ours.update(k, v), ref.update(k, v)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        elif op == "select":
            ours.batch_select_indices(arg), ref.batch_select_indices(arg)
        elif op == "repeat":
            ours.batch_repeat_interleave(arg), ref.batch_repeat_interleave(arg)
        else:
            ours.crop(arg), ref.crop(arg)
        assert ours.get_seq_length() == ref.get_seq_length()
        assert torch.equal(ours.keys, ref.keys) and torch.equal(ours.values, ref.values)
    assert ours.get_seq_length() == 5 + 1 + 1 + 1 + 4 - 2 + 1


def test_update_writes_in_place_within_the_reserve():
    layer = PreallocatedLayer(reserve=4)
    layer.update(*_kv(2, 3, 0))
    buffer = layer._k
    for s in range(4):
        layer.update(*_kv(2, 1, s + 1))
        assert layer._k is buffer and layer.keys.data_ptr() == buffer.data_ptr()  # no new allocation
    layer.update(*_kv(2, 1, 9))  # past the reserve: grows, keeping what was there
    assert layer._k is not buffer and torch.equal(layer.keys[:, :, :7], buffer[:, :, :7])


def test_decode_cache_replaces_the_full_attention_layers_of_the_tiny_llm(tiny):
    model, _ = tiny
    cache = decode_cache(model.llm, reserve=8)
    assert len(cache.layers) == model.llm.config.num_hidden_layers
    assert all(isinstance(layer, PreallocatedLayer) and layer.reserve == 8 for layer in cache.layers)


def test_generation_with_the_in_place_cache_equals_transformers_dynamic_cache(tiny, monkeypatch):
    """Sampled tokens and their log-probs, with k rows per prompt and rows finishing at different steps
    (so rows leave the cache mid-generation), are those of the DynamicCache path to float precision."""
    model, proc = tiny
    model.eval()
    batch = collate_generation([proc.encode(s) for s in mixed_samples()], proc.pad_token_id)
    # the random-init model samples near-uniformly: one token in 8 a stop token ends rows at different steps
    p = SamplingParams(max_new_tokens=24, temperature=1.0, num_samples=3, decoder="transformers",
                       stop_token_ids=list(range(0, len(proc.tokenizer), 8)))

    def run():
        return generate(model, batch, p, proc.eos_token_id, generator=torch.Generator().manual_seed(4))

    ours = run()
    monkeypatch.setattr(decoding, "decode_cache", lambda llm, reserve: None)  # the model builds a DynamicCache
    ref = run()
    assert len({len(t) for t in ref.tokens}) > 1  # rows did finish at different steps
    assert ours.tokens == ref.tokens and ours.finish_reasons == ref.finish_reasons
    for a, b in zip(ours.logprobs, ref.logprobs):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)
