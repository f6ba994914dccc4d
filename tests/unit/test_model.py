import pytest
import torch

from processors import collate_generation, collate_scoring, collate_sft
from vlrl.data.synth import generate as synth
from vlrl.models import ImageTokenMismatchError, SamplingParams, generate, load_pretrained, save_pretrained
from vlrl.models.vlm import position_ids_from_mask
from vlrl.types import Sample


def mixed_samples():
    """0, 1 and 2 images in one batch."""
    two = synth("shapes", 2, seed=5)
    return [
        synth("arithmetic", 1, seed=3)[0],
        synth("shapes", 1, seed=4)[0],
        Sample(id="pair", question="<image> vs <image>: how many shapes in total?",
               images=[two[0].images[0], two[1].images[0]], response="Answer: 5"),
    ]


def test_forward_backward_on_a_mixed_batch(tiny):
    model, proc = tiny
    model.train()
    model.zero_grad()
    batch = collate_sft([proc.encode(s, s.response) for s in mixed_samples()], proc.pad_token_id)
    assert batch.image_counts == [0, 1, 2]
    loss = model(batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    for part in (model.encoder, model.projector, model.llm):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    model.zero_grad()


def test_image_features_depend_on_their_own_sample(tiny):
    model, proc = tiny
    model.eval()
    samples = mixed_samples()
    enc = [proc.encode(s, s.response) for s in samples]
    base = model(collate_sft(enc, proc.pad_token_id)).logits
    enc[2].pixel_values = enc[2].pixel_values.flip(-1)  # change only sample 2's images
    changed = model(collate_sft(enc, proc.pad_token_id)).logits
    assert torch.allclose(base[:2], changed[:2], atol=1e-6)
    assert not torch.allclose(base[2], changed[2])


def test_placeholder_feature_mismatch_names_the_sample(tiny):
    model, proc = tiny
    s = synth("shapes", 1)[0]
    enc = proc.encode(s, s.response)
    enc.input_ids = enc.input_ids[:3] + enc.input_ids[5:]  # lose two placeholder tokens
    batch = collate_sft([enc], proc.pad_token_id)
    n = proc.num_image_tokens
    with pytest.raises(ImageTokenMismatchError, match=rf"sample '{s.id}': {n - 2} image placeholder.*1 image\(s\) x {n}"):
        model(batch)


def test_text_only_batch_still_reaches_vision_parameters(tiny):
    """Under DDP every rank must reduce the same parameters, images or not."""
    model, proc = tiny
    model.train()
    model.zero_grad()
    s = synth("arithmetic", 2)
    model(collate_sft([proc.encode(x, x.response) for x in s], proc.pad_token_id)).loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(float(p.grad.abs().sum()) == 0.0 for p in model.encoder.parameters())
    model.zero_grad()


def test_save_load_round_trip_gives_identical_logits(tiny, tmp_path):
    model, proc = tiny
    model.eval()
    batch = collate_sft([proc.encode(s, s.response) for s in mixed_samples()], proc.pad_token_id)
    save_pretrained(model, proc, tmp_path / "m")
    again, proc2 = load_pretrained(tmp_path / "m")
    again.eval()
    assert torch.equal(model(batch).logits, again(batch).logits)
    assert proc2.tokenizer.get_vocab() == proc.tokenizer.get_vocab()
    assert not (tmp_path / "m" / ".saving").exists()


def reference_greedy(model, enc, eos, max_new):
    """No cache: re-run the full sequence for every new token."""
    ids = list(enc.input_ids)
    new = []
    for _ in range(max_new):
        b = collate_generation([type(enc)(enc.sample_id, ids, len(ids), enc.pixel_values, enc.num_images)], 0)
        logits = model(b).logits[0, -1]
        tok = int(logits.argmax())
        new.append(tok)
        ids.append(tok)
        if tok == eos:
            break
    return new


def test_kv_cache_greedy_equals_no_cache_reference(tiny):
    model, proc = tiny
    model.eval()
    samples = mixed_samples()
    enc = [proc.encode(s) for s in samples]
    out = generate(model, collate_generation(enc, proc.pad_token_id), SamplingParams(max_new_tokens=12),
                   proc.eos_token_id)
    for e, toks in zip(enc, out.tokens):
        assert toks == reference_greedy(model, e, proc.eos_token_id, 12)


def test_generation_passes_the_cache_through_the_supported_keyword(tiny, monkeypatch):
    """The KV cache goes in and comes out as ``cache`` (transformers 5 deprecates ``past_key_values``, as
    an argument and as an output attribute, and logs a warning for it): no deprecation warning, same
    tokens as the no-cache reference."""
    import warnings

    import transformers.utils.generic as hf_generic

    from vlrl.models.generation import cache_kwarg

    model, proc = tiny
    model.eval()
    assert cache_kwarg(type(model.llm)) == "cache"
    enc = [proc.encode(s) for s in mixed_samples()[:2]]
    logged = []  # transformers logs it once per process (warning_once): record every call instead
    monkeypatch.setattr(hf_generic.logger, "warning_once", lambda msg, *a, **k: logged.append(msg))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = generate(model, collate_generation(enc, proc.pad_token_id), SamplingParams(max_new_tokens=5),
                       proc.eos_token_id)
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    assert not [m for m in logged if "past_key_values" in m]
    assert out.tokens[0] == reference_greedy(model, enc[0], proc.eos_token_id, 5)


def test_k_samples_share_one_prefill_and_sampling_is_seeded(tiny):
    model, proc = tiny
    enc = [proc.encode(s) for s in mixed_samples()[:2]]
    batch = collate_generation(enc, proc.pad_token_id)
    greedy = generate(model, batch, SamplingParams(max_new_tokens=6, num_samples=3), proc.eos_token_id)
    assert greedy.prompt_index == [0, 0, 0, 1, 1, 1]
    assert greedy.tokens[0] == greedy.tokens[1] == greedy.tokens[2]
    p = SamplingParams(max_new_tokens=6, num_samples=4, temperature=1.0, top_p=0.9)
    a = generate(model, batch, p, proc.eos_token_id, torch.Generator().manual_seed(1))
    b = generate(model, batch, p, proc.eos_token_id, torch.Generator().manual_seed(1))
    assert a.tokens == b.tokens and len({tuple(t) for t in a.tokens[:4]}) > 1
    assert all(r in ("stop", "length") for r in a.finish_reasons)


def test_generation_stops_on_eos_and_continues_a_partial_response(tiny):
    model, proc = tiny
    model.eval()
    s = synth("shapes", 1)[0]
    # force EOS as the most likely first token: the row must stop after 1 token
    bias = torch.zeros(model.llm.lm_head.weight.shape[0])
    bias[proc.eos_token_id] = 1e4
    model.llm.lm_head.bias = torch.nn.Parameter(bias)
    try:
        out = generate(model, collate_generation([proc.encode(s)], proc.pad_token_id), SamplingParams(max_new_tokens=5),
                       proc.eos_token_id)
        assert out.tokens == [[proc.eos_token_id]] and out.finish_reasons == ["stop"]
    finally:
        model.llm.lm_head.bias = None
    partial = proc.tokenize("Answer:")
    full = generate(model, collate_generation([proc.encode(s)], proc.pad_token_id),
                    SamplingParams(max_new_tokens=8), proc.eos_token_id, ).tokens[0]
    cont = generate(model, collate_generation([proc.encode(s, partial, add_eos=False)], proc.pad_token_id),
                    SamplingParams(max_new_tokens=3), proc.eos_token_id).tokens[0]
    ref = reference_greedy(model, proc.encode(s, partial, add_eos=False), proc.eos_token_id, 3)
    assert cont == ref and full is not None


def test_response_logprobs_match_a_manual_computation(tiny):
    model, proc = tiny
    model.eval()
    samples = mixed_samples()
    batch = collate_scoring([proc.encode(s, s.response) for s in samples], proc.pad_token_id)
    logp, ent = model.response_logprobs(batch, with_entropy=True)
    cold, cold_ent = model.response_logprobs(batch, with_entropy=True, temperature=0.5)
    logits = model(batch).logits.float()
    logits[..., model.image_token_id] = float("-inf")  # the policy never writes an image placeholder
    for i in range(len(samples)):
        pos = batch.response_mask[i, 1:].nonzero().squeeze(-1)  # predicting token pos+1
        target = batch.input_ids[i, pos + 1, None]
        manual = torch.log_softmax(logits[i, pos], -1).gather(-1, target).squeeze(-1)
        assert torch.allclose(logp[i, pos], manual, atol=1e-5)
        # at temperature T the scored distribution is softmax(logits / T), the one sampling at T draws from
        manual_cold = torch.log_softmax(logits[i, pos] / 0.5, -1).gather(-1, target).squeeze(-1)
        assert torch.allclose(cold[i, pos], manual_cold, atol=1e-5)
        assert logp[i][~batch.response_mask[i, 1:]].abs().sum() == 0
        assert (ent[i, pos] > 0).all() and (cold_ent[i, pos] < ent[i, pos]).all()
    with pytest.raises(ValueError, match="temperature"):
        model.response_logprobs(batch, temperature=0.0)


def test_sampled_tokens_are_scored_as_they_were_sampled(tiny):
    """RL is on-policy only if the loss's log-probs of a sampled response equal the ones the sampler drew it
    with: generation (left-padded mixed batch with 0, 1 and 2 images, k = 3 rows per prompt sharing one
    prefill, KV cache) against the scoring path the losses use (right-padded, no cache), per token."""
    model, proc = tiny
    model.eval()
    samples = mixed_samples()
    batch = collate_generation([proc.encode(s) for s in samples], proc.pad_token_id)
    with torch.no_grad():
        out = generate(model, batch, SamplingParams(max_new_tokens=6, temperature=1.0, num_samples=3,
                                                    stop_token_ids=[-1]),
                       proc.eos_token_id, generator=torch.Generator().manual_seed(0))
        enc = [proc.encode(samples[p], t, add_eos=False) for p, t in zip(out.prompt_index, out.tokens)]
        scoring = collate_scoring(enc, proc.pad_token_id)
        logp, _ = model.response_logprobs(scoring)
    assert len(set(map(tuple, out.tokens))) > 3  # the rows really are different samples
    for i, sampled in enumerate(out.logprobs):
        scored = logp[i][scoring.response_mask[i, 1:]]
        assert len(sampled) == 6 and torch.allclose(scored, torch.tensor(sampled), atol=1e-4)


def test_position_ids_ignore_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_per_prompt_sample_counts_and_caps_in_one_loop(tiny):
    """Prompt 0 gets 1 row of at most 2 tokens, prompt 1 three rows of at most 5 (greedy, so its rows
    agree); each row equals what generating its prompt alone gives."""
    model, proc = tiny
    samples = synth("shapes", 1, seed=3) + synth("arithmetic", 1, seed=3)
    batch = collate_generation([proc.encode(s) for s in samples], proc.pad_token_id)
    never = SamplingParams(max_new_tokens=5, stop_token_ids=[-1])  # no stop token: rows run to their cap
    out = generate(model, batch, never, proc.eos_token_id, samples_per_prompt=[1, 3], max_new_per_prompt=[2, 5])
    assert out.prompt_index == [0, 1, 1, 1]
    assert [len(t) for t in out.tokens] == [2, 5, 5, 5] and out.finish_reasons == ["length"] * 4
    assert out.tokens[1] == out.tokens[2] == out.tokens[3]
    for i, cap in ((0, 2), (1, 5)):
        alone = collate_generation([proc.encode(samples[i])], proc.pad_token_id)
        ref = generate(model, alone, SamplingParams(max_new_tokens=cap, stop_token_ids=[-1]), proc.eos_token_id)
        assert ref.tokens[0] == out.tokens[0 if i == 0 else 1]


def test_forward_loss_is_the_hand_tested_sft_loss(tiny):
    """The model's loss (the causal LM's own shifted cross-entropy) is vlrl.algos.sft.sft_loss."""
    from vlrl.algos.sft import sft_loss

    model, proc = tiny
    batch = collate_sft([proc.encode(s, s.response) for s in mixed_samples()], proc.pad_token_id)
    out = model(batch)
    assert out.loss.item() == pytest.approx(sft_loss(out.logits, batch.labels).loss.item(), rel=1e-5)


HF_TOWER = ("model.encoder.name=hf_vision", "model.encoder.arch={model_type: clip_vision_model, hidden_size: 64, "
            "intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2, image_size: 48, patch_size: 16}")


@pytest.mark.parametrize("encoder", ["open_clip", "hf_vision"])
def test_gradient_checkpointing_gives_the_same_gradients(encoder):
    """model.gradient_checkpointing recomputes activations in the LLM and the vision tower: the same loss
    and gradients as storing them, on a mixed batch (0, 1 and 2 images per row)."""
    from conftest import tiny_model_config

    from vlrl.models import build_vlm

    extra = HF_TOWER if encoder == "hf_vision" else ()
    grads = []
    for on in (False, True):
        torch.manual_seed(0)
        model, proc = build_vlm(tiny_model_config(*extra, f"model.gradient_checkpointing={on}"))
        model.train()
        assert model.llm.is_gradient_checkpointing == on and model.config.gradient_checkpointing == on
        tower = model.encoder.model.is_gradient_checkpointing if encoder == "hf_vision" else \
            model.encoder.tower.transformer.grad_checkpointing
        assert tower == on
        batch = collate_sft([proc.encode(s, s.response) for s in mixed_samples()], proc.pad_token_id)
        model(batch).loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any(k.startswith("encoder.") for k in grads[0])
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])


def test_compiled_generation_matches_eager_and_sees_weight_updates(monkeypatch):
    """``SamplingParams(compile=True)`` runs prefill and decode through ``torch.compile``: the same tokens and
    log-probs as eager, also after the weights change in place (an optimizer step between rollouts), on a
    text and an image prompt of different lengths; nothing compiled reaches the state dict. The backend is
    aot_eager here (dynamo's capture and the graph, without inductor's minute of code generation; the
    speed-up is inductor's, measured in docs/results.md)."""
    import vlrl.models.generation as generation
    from tests.conftest import tiny_model_config
    from vlrl.models import build_vlm

    monkeypatch.setattr(generation, "COMPILE_BACKEND", "aot_eager")
    torch.manual_seed(0)
    model, proc = build_vlm(tiny_model_config())
    model.eval()
    keys = set(model.state_dict())
    batch = collate_generation([proc.encode(s) for s in mixed_samples()[:2]], proc.pad_token_id)

    def both():
        outs = []
        for compile in (False, True):
            params = SamplingParams(max_new_tokens=6, temperature=1.0, num_samples=2, compile=compile)
            outs.append(generate(model, batch, params, proc.eos_token_id, torch.Generator().manual_seed(3)))
        return outs

    for _ in range(2):
        eager, compiled = both()
        assert compiled.tokens == eager.tokens
        assert max(abs(a - b) for x, y in zip(eager.logprobs, compiled.logprobs) for a, b in zip(x, y)) < 1e-5
        with torch.no_grad():  # an in-place update, as an optimizer step makes
            model.llm.get_output_embeddings().weight.mul_(1.5)
    assert set(model.state_dict()) == keys
