import pytest
import torch

from processors import collate_generation
from vlrl.data.synth import generate as synth
from vlrl.models import SamplingParams, generate
from vlrl.models.generation import draw, is_looping
from vlrl.rollout import ReplayBuffer, RolloutConfig, rollout
from vlrl.rollout.scoring import sampled_logprobs, scoring_batch


def test_loop_detection_by_hand():
    assert is_looping([1, 2, 3, 3, 3, 3], max_period=2, times=4)
    assert is_looping([9, 1, 2, 1, 2, 1, 2, 1, 2], max_period=2, times=4)
    assert not is_looping([1, 2, 1, 2, 1, 2, 1, 3], max_period=2, times=4)
    assert not is_looping([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3], max_period=2, times=4)  # period 3 > 2


def test_draw_samples_tokens_with_their_probabilities():
    """Inverse-CDF sampling: 200,000 draws from [0.1, 0, 0.6, 0.3] land within 0.005 of each probability
    (3.5 standard errors at most), never on the zero-probability token, and a seed repeats the draws."""
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).repeat(200_000, 1)
    toks = draw(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(toks, minlength=4).float() / len(toks)
    assert freq[1] == 0 and torch.allclose(freq, probs[0], atol=0.005)
    assert torch.equal(draw(probs[:50], torch.Generator().manual_seed(3)), draw(probs[:50], torch.Generator().manual_seed(3)))


class forced_token:
    """Bias the LM head so that greedy decoding always picks ``token`` (or, with a negative ``value``,
    never picks it)."""

    def __init__(self, model, token, value=1e4):
        self.model, self.token, self.value = model, token, value

    def __enter__(self):
        bias = torch.zeros(self.model.llm.lm_head.weight.shape[0])
        bias[self.token] = self.value
        self.model.llm.lm_head.bias = torch.nn.Parameter(bias)

    def __exit__(self, *a):
        self.model.llm.lm_head.bias = None


def test_repeat_detection_stops_a_looping_sample(tiny):
    model, proc = tiny
    batch = collate_generation([proc.encode(synth("shapes", 1)[0])], proc.pad_token_id)
    with forced_token(model, 10):
        out = generate(model, batch, SamplingParams(max_new_tokens=50, repeat_max_period=2, repeat_times=4),
                       proc.eos_token_id)
        free = generate(model, batch, SamplingParams(max_new_tokens=50), proc.eos_token_id)
    assert out.tokens == [[10, 10, 10, 10]] and out.finish_reasons == ["repeat"]
    assert len(free.tokens[0]) == 50 and free.finish_reasons == ["length"]


@pytest.fixture(scope="module")
def talkative():
    """A tiny model trained for 30 steps, so that greedy decoding writes varied text, not one repeated token."""
    from processors import collate_sft
    from tests.conftest import tiny_model_config
    from vlrl.models import build_vlm

    torch.manual_seed(0)
    model, proc = build_vlm(tiny_model_config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = synth("shapes", 16, seed=1, style="long") + synth("arithmetic", 16, seed=1, style="long")
    batch = collate_sft([proc.encode(s, s.response) for s in data], proc.pad_token_id)
    for _ in range(30):
        model(batch).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval(), proc


def test_partial_trajectory_continues_across_iterations_with_right_tokens_and_masks(talkative):
    model, proc = talkative
    prompts = synth("shapes", 2, seed=3)
    cfg = RolloutConfig(k=2, temperature=0.0, max_response_tokens=8, budget=3, max_age=3, repeat_max_period=0)
    buf = ReplayBuffer(max_age=cfg.max_age)
    with forced_token(model, proc.eos_token_id, -1e4):  # no early EOS: every response needs all 8 tokens
        full = generate(model, collate_generation([proc.encode(p) for p in prompts], proc.pad_token_id),
                        SamplingParams(max_new_tokens=8), proc.eos_token_id).tokens  # uninterrupted greedy
        assert rollout(model, proc, prompts, buf, 0, cfg) == [] and len(buf) == 4
        assert all(len(t.tokens) == 3 for t in buf.items)
        assert rollout(model, proc, [], buf, 1, cfg) == [] and len(buf) == 4
        done = rollout(model, proc, [], buf, 2, cfg)
    assert all(len(set(t)) > 1 for t in full)  # a non-trivial continuation, not one repeated token
    assert len(done) == 4 and len(buf) == 0
    for t in done:
        p = prompts.index(t.sample)
        assert t.tokens == full[p]  # 3 + 3 + 2 tokens written by three iterations = the straight answer
        assert [(s.start, s.end, s.iteration) for s in t.segments] == [(0, 3, 0), (3, 6, 1), (6, 8, 2)]
        assert t.finish == "max_length"
        assert t.loss_mask(2, mask_old_segments=True) == [False] * 6 + [True] * 2
        assert t.loss_mask(2, mask_old_segments=False) == [True] * 8


def test_sampled_logprobs_of_a_continued_trajectory_are_where_the_loss_scores_them(tiny):
    """Mixed image / text prompts at T 0.7, cut by the budget after 3 tokens and finished in the next
    iteration: the sampler's log-probs of the second segment equal the loss's (response_logprobs at T 0.7)
    at the same positions; the first segment (an older policy's), the prompt and the padding are NaN."""
    model, proc = tiny
    prompts = synth("shapes", 1, seed=4) + synth("arithmetic", 1, seed=4)
    cfg = RolloutConfig(k=2, temperature=0.7, max_response_tokens=5, budget=3, max_age=3, repeat_max_period=0)
    buf = ReplayBuffer(max_age=3)
    with forced_token(model, proc.eos_token_id, -1e4):  # no EOS: every response takes both iterations
        assert rollout(model, proc, prompts, buf, 0, cfg, seed=0) == []
        done = rollout(model, proc, [], buf, 1, cfg, seed=1)
        batch = scoring_batch(proc, done, 1, mask_old_segments=False)
        with torch.no_grad():
            scored, _ = model.response_logprobs(batch, temperature=0.7)
    sampled = sampled_logprobs(done, batch, 1)
    assert len(done) == 4 and all([(s.start, s.end) for s in t.segments] == [(0, 3), (3, 5)] for t in done)
    for i in range(len(done)):
        p = batch.prompt_lens[i]
        row = sampled[i]
        assert torch.isnan(row[: p - 1 + 3]).all() and torch.isnan(row[p - 1 + 5 :]).all()
        assert torch.allclose(row[p - 1 + 3 : p - 1 + 5], scored[i, p - 1 + 3 : p - 1 + 5], atol=1e-4)


def test_buffer_drops_trajectories_older_than_max_age_and_round_trips(tiny):
    model, proc = tiny
    prompts = synth("arithmetic", 1, seed=5)
    cfg = RolloutConfig(k=3, temperature=1.0, max_response_tokens=50, budget=2, max_age=1, repeat_max_period=0)
    buf = ReplayBuffer(max_age=1)
    with forced_token(model, 10):  # never EOS: every trajectory is cut by the budget
        rollout(model, proc, prompts, buf, 0, cfg, seed=0)
        assert len(buf) == 3
        state = buf.state_dict()
        again = ReplayBuffer()
        again.load_state_dict(state, {p.id: p for p in prompts})
        assert [t.tokens for t in again.items] == [t.tokens for t in buf.items]
        rollout(model, proc, [], buf, 1, cfg)  # age 2 > max_age 1: dropped, counted
    assert len(buf) == 0 and buf.expired == 3


def test_the_image_placeholder_is_never_generated(tiny):
    model, proc = tiny
    batch = collate_generation([proc.encode(synth("shapes", 1)[0])], proc.pad_token_id)
    with forced_token(model, proc.image_token_id):  # the model "wants" to write <image>
        out = generate(model, batch, SamplingParams(max_new_tokens=6, temperature=1.0), proc.eos_token_id,
                       torch.Generator().manual_seed(0))
    assert proc.image_token_id not in out.tokens[0] and len(out.tokens[0]) > 0


def test_a_response_never_runs_past_max_length_and_scores_where_it_was_sampled(talkative):
    """A response cap beyond the model's context (prompt + cap > max_length): generation stops where
    prompt + response fill max_length, the trajectory finishes there (it cannot be continued) and the
    scoring batch holds every sampled token. Before, the scoring batch cut the response and the
    sampler's log-probs no longer fitted it (a crash in sampled_logprobs)."""
    model, proc = talkative
    prompts = synth("arithmetic", 2, seed=3)
    room = [proc.max_length - len(proc.encode(p).input_ids) for p in prompts]
    cfg = RolloutConfig(k=1, temperature=1.0, max_response_tokens=proc.max_length, budget=0, repeat_max_period=0)
    with forced_token(model, proc.eos_token_id, -1e4):  # never stops by itself
        done = rollout(model, proc, prompts, ReplayBuffer(), 0, cfg, seed=0)
    assert sorted(len(t.tokens) for t in done) == sorted(room) and {t.finish for t in done} == {"max_length"}
    batch = scoring_batch(proc, done, 0, True)
    lp = sampled_logprobs(done, batch, 0)
    assert int(batch.response_mask.sum()) == sum(room) == int((~lp.isnan()).sum())


def test_a_trajectory_samples_the_same_whatever_shares_its_batch(tiny):
    """Keyed sampling: two prompts rolled out together (one batch), apart (two calls, in the other
    order) or in batches of one give every trajectory the same tokens, in both the first iteration and
    its continuation from the buffer: what makes a rollout independent of the number of processes."""
    model, proc = tiny
    prompts = synth("shapes", 1, seed=4) + synth("arithmetic", 1, seed=4)
    cfg = RolloutConfig(k=3, temperature=1.0, max_response_tokens=8, budget=4, max_age=3, repeat_max_period=0)

    def run(groups, batch_size):
        out = {}
        for group in groups:
            buf = ReplayBuffer(max_age=3)
            c = RolloutConfig(**{**cfg.__dict__, "batch_size": batch_size})
            first = rollout(model, proc, group, buf, 0, c, seed=5)
            for t in first + rollout(model, proc, [], buf, 1, c, seed=5) + buf.items:
                out[(t.sample.id, t.key)] = t.tokens
        return out

    with forced_token(model, proc.eos_token_id, -1e4):  # no EOS: every trajectory is continued once
        together, apart, single = run([prompts], 32), run([prompts[1:], prompts[:1]], 32), run([prompts], 1)
    assert len(together) == 6 and all(len(t) == 8 for t in together.values())
    assert together == apart == single
    assert len({tuple(t) for t in together.values()}) > 1  # the keys differ, so do the samples
