"""RL losses and the length reward against hand-computed numbers (the arithmetic is in the comments)."""

import math

import pytest
import torch

from vlrl.algos import LOSSES
from vlrl.algos.group import group_logmeanexp, group_mean, group_std
from vlrl.rewards.length import length_penalty_weight, length_reward


def seq(values, requires_grad=False):
    """Sequence log-probs as one-token responses: (B,) -> token_logp (B, 1) and an all-true mask."""
    t = torch.tensor(values).reshape(-1, 1)
    t.requires_grad_(requires_grad)
    return t, torch.ones_like(t, dtype=torch.bool)


def test_group_statistics():
    v, g = torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([7, 7, 3, 3])
    assert group_mean(v, g).tolist() == [0.5, 0.5, 1.0, 1.0]
    assert group_std(v, g).tolist() == [0.5, 0.5, 0.0, 0.0]
    # tau log mean exp(r / tau), tau = 0.5: group 7: 0.5 * log((e^2 + e^0) / 2) = 0.716890; group 3: 1
    lme = group_logmeanexp(v, g, 0.5)
    assert lme[0].item() == pytest.approx(0.5 * math.log((math.exp(2) + 1) / 2)) and lme[2].item() == pytest.approx(1.0)


def test_kimi_loss_by_hand():
    # prompt A: rewards [1, 0] -> rbar 0.5, adv [0.5, -0.5]; prompt B: rewards [1, 1] -> adv [0, 0]
    # logp [-2, -3, -1, -4], logp_ref [-2.5, -3, -1, -3] -> log-ratio [0.5, 0, 0, -1]; tau = 0.5
    # pg = adv * logp = [-1, 1.5, 0, 0] (sum 0.5); reg = tau/2 * ratio^2 = [0.0625, 0, 0, 0.25] (sum 0.3125)
    # loss = -(1/4) * (0.5 - 0.3125) = -0.046875
    logp, mask = seq([-2.0, -3.0, -1.0, -4.0], requires_grad=True)
    out = LOSSES.build("kimi", token_logp=logp, ref_token_logp=seq([-2.5, -3.0, -1.0, -3.0])[0], mask=mask,
                       rewards=torch.tensor([1.0, 0.0, 1.0, 1.0]), group=torch.tensor([0, 0, 1, 1]), tau=0.5)
    assert out.loss.item() == pytest.approx(-0.046875)
    out.loss.backward()
    # d loss / d logp_j = -(1/4) * (adv_j - tau * ratio_j) = [-(0.5 - 0.25)/4, 0.5/4, 0, -(0 + 0.5)/4]
    assert logp.grad.flatten().tolist() == pytest.approx([-0.0625, 0.125, 0.0, -0.125])


def test_kimi_first_step_is_reinforce_with_mean_baseline():
    """logp == logp_ref (the iteration's first step): the squared term and its gradient vanish."""
    logp, mask = seq([-1.0, -2.0, -3.0], requires_grad=True)
    out = LOSSES.build("kimi", token_logp=logp, ref_token_logp=logp.detach().clone(), mask=mask,
                       rewards=torch.tensor([1.0, 0.0, 0.0]), group=torch.zeros(3, dtype=torch.long), tau=0.3)
    out.loss.backward()
    adv = torch.tensor([2 / 3, -1 / 3, -1 / 3])
    assert out.metrics["reg_term"] == 0.0 and out.metrics["log_ratio_abs_max"] == 0.0
    assert logp.grad.flatten().tolist() == pytest.approx((-adv / 3).tolist())


def test_kimi_negative_weight_scales_only_below_baseline_advantages():
    # one group, rewards [1, 0, 0]: rbar 1/3, adv [2/3, -1/3, -1/3]; negative_weight 0.25 -> [2/3, -1/12, -1/12]
    # first step (logp == ref): d loss / d logp_j = -adv_j / 3
    logp, mask = seq([-1.0, -2.0, -3.0], requires_grad=True)
    out = LOSSES.build("kimi", token_logp=logp, ref_token_logp=logp.detach().clone(), mask=mask,
                       rewards=torch.tensor([1.0, 0.0, 0.0]), group=torch.zeros(3, dtype=torch.long), tau=0.3,
                       negative_weight=0.25)
    out.loss.backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-2 / 9, 1 / 36, 1 / 36])
    # loss = -(1/3) * (2/3 * -1 + -1/12 * -2 + -1/12 * -3) = -(1/3) * (-2/3 + 5/12) = 1/12
    assert out.loss.item() == pytest.approx(1 / 12)


def test_kimi_inert_rows_are_the_zero_advantage_ones():
    # group 0 rewards [1, 0, 0]: adv [2/3, -1/3, -1/3]; group 1 rewards [1, 1]: adv [0, 0]
    # negative_weight 1: only group 1 is inert; 0: the below-baseline rows of group 0 too
    from vlrl.algos.kimi import kimi_inert_rows

    r, g = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 0, 1, 1])
    assert kimi_inert_rows(r, g).tolist() == [False, False, False, True, True]
    assert kimi_inert_rows(r, g, negative_weight=0.0).tolist() == [False, True, True, True, True]
    assert kimi_inert_rows(r, g, negative_weight=0.5).tolist() == [False, False, False, True, True]
    assert LOSSES.get("kimi").inert_rows is kimi_inert_rows  # what the update asks the loss for


def test_kimi_baseline_scale_keeps_the_signal_of_all_correct_groups():
    # group 0 rewards [1, 0, 0, 0]: rbar 1/4; group 1 rewards [1, 1]: rbar 1; baseline_scale 0.5
    # adv = r - 0.5 * rbar = [1 - 1/8, -1/8, -1/8, -1/8, 1 - 1/2, 1 - 1/2] = [7/8, -1/8, -1/8, -1/8, 1/2, 1/2]
    # negative_weight 0 zeroes the negatives: [7/8, 0, 0, 0, 1/2, 1/2]; first step: d loss / d logp_j = -adv_j / 6
    from vlrl.algos.kimi import kimi_advantages, kimi_inert_rows

    r, g = torch.tensor([1.0, 0, 0, 0, 1, 1]), torch.tensor([0, 0, 0, 0, 1, 1])
    assert kimi_advantages(r, g, baseline_scale=0.5).tolist() == pytest.approx([7 / 8, -1 / 8, -1 / 8, -1 / 8, 0.5, 0.5])
    logp, mask = seq([-1.0] * 6, requires_grad=True)
    out = LOSSES.build("kimi", token_logp=logp, ref_token_logp=logp.detach().clone(), mask=mask, rewards=r,
                       group=g, negative_weight=0.0, baseline_scale=0.5)
    out.loss.backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-7 / 48, 0, 0, 0, -1 / 12, -1 / 12])
    # the all-correct group is no longer inert; at scale 1 (the paper's baseline) it is
    assert kimi_inert_rows(r, g, negative_weight=0.0, baseline_scale=0.5).tolist() == [False, True, True, True, False, False]
    # positive_share: group 0's one correct response carries k/2 = 2 responses' weight (7/8 * 2 / 1 = 7/4),
    # group 1's two share k/2 = 1 (0.5 * 1 / 2 = 1/4 each); below-baseline ones (times negative_weight 0) stay 0
    shared = kimi_advantages(r, g, negative_weight=0.0, baseline_scale=0.5, positive_share=True)
    assert shared.tolist() == pytest.approx([7 / 4, 0, 0, 0, 1 / 4, 1 / 4])
    assert kimi_inert_rows(r, g, negative_weight=0.0, baseline_scale=0.5, positive_share=True).tolist() == [
        False, True, True, True, False, False]
    # with std_normalize the all-correct group would be 0.5 / (0 + eps) = 5e5: refused, naming both keys
    with pytest.raises(ValueError, match="std_normalize needs baseline_scale 1"):
        kimi_advantages(r, g, baseline_scale=0.5, std_normalize=True)
    assert kimi_inert_rows(r, g, negative_weight=0.0).tolist() == [False, True, True, True, True, True]
    # scale 0 and negative_weight 0: the correct responses weigh 1, the wrong ones 0 (rejection sampling)
    assert kimi_advantages(r, g, negative_weight=0.0, baseline_scale=0.0).tolist() == [1, 0, 0, 0, 1, 1]


def test_kimi_std_normalize_divides_by_the_group_std():
    # group 0 rewards [1, 0, 0, 0]: mean 1/4, std sqrt(3)/4 -> adv [3/4, -1/4, -1/4, -1/4] / (sqrt(3)/4)
    #   = [sqrt(3), -1/sqrt(3), -1/sqrt(3), -1/sqrt(3)]; group 1 rewards [1, 0]: std 1/2 -> adv [1, -1]
    # first step: d loss / d logp_j = -adv_j / 6
    logp, mask = seq([-1.0] * 6, requires_grad=True)
    out = LOSSES.build("kimi", token_logp=logp, ref_token_logp=logp.detach().clone(), mask=mask,
                       rewards=torch.tensor([1.0, 0, 0, 0, 1, 0]), group=torch.tensor([0, 0, 0, 0, 1, 1]),
                       std_normalize=True, eps=0.0)
    out.loss.backward()
    r3 = math.sqrt(3)
    assert logp.grad.flatten().tolist() == pytest.approx([-r3 / 6, 1 / (6 * r3), 1 / (6 * r3), 1 / (6 * r3), -1 / 6, 1 / 6])


def test_kimi_logmeanexp_baseline_and_length_normalisation():
    # group rewards [1, 0], tau 0.5: rbar = 0.716890 -> adv [0.283110, -0.716890]
    # responses of 2 and 4 tokens with sequence log-probs -2 and -4 -> logp / len = [-1, -1]
    tl = torch.tensor([[-1.0, -1.0, 0.0, 0.0], [-1.0, -1.0, -1.0, -1.0]])
    mask = torch.tensor([[True, True, False, False], [True] * 4])
    out = LOSSES.build("kimi", token_logp=tl, ref_token_logp=tl.clone(), mask=mask,
                       rewards=torch.tensor([1.0, 0.0]), group=torch.tensor([0, 0]), tau=0.5,
                       baseline="logmeanexp", length_normalize=True)
    rbar = 0.5 * math.log((math.exp(2) + 1) / 2)
    expected = -((1 - rbar) * -1 + (0 - rbar) * -1) / 2
    assert out.loss.item() == pytest.approx(expected)
    with pytest.raises(ValueError):
        LOSSES.build("kimi", token_logp=torch.zeros(2, 1), ref_token_logp=torch.zeros(2, 1),
                     mask=torch.ones(2, 1, dtype=torch.bool), rewards=torch.zeros(2), group=torch.zeros(2), baseline="max")


def test_grpo_loss_by_hand():
    # rewards [1, 0] in one group: mean 0.5, std 0.5 -> adv [1, -1]; old log-probs 0
    # row 0 (2 tokens): ratios 1.5, 0.9, A = 1 -> min(1.5, 1.2) = 1.2, min(0.9, 0.9) = 0.9 -> mean(-1.2, -0.9) = -1.05
    # row 1 (1 token):  ratio 1.1, A = -1 -> min(-1.1, -1.1) = -1.1 -> +1.1
    # loss = mean(-1.05, 1.1) = 0.025; clipped tokens: row 0 token 0 only -> 1/3
    tl = torch.tensor([[math.log(1.5), math.log(0.9)], [math.log(1.1), 5.0]])
    mask = torch.tensor([[True, True], [True, False]])
    out = LOSSES.build("grpo", token_logp=tl, ref_token_logp=torch.zeros(2, 2), mask=mask,
                       rewards=torch.tensor([1.0, 0.0]), group=torch.tensor([0, 0]), eps=0.0)
    assert out.loss.item() == pytest.approx(0.025, abs=1e-6) and out.metrics["clip_frac"] == pytest.approx(1 / 3)
    # the k3 KL to the same reference (log-probs 0), coefficient 1, per token e^d - d - 1 with d = -logp:
    # row 0: (1/1.5 + ln 1.5 - 1 + 1/0.9 + ln 0.9 - 1) / 2 tokens; row 1: 1/1.1 + ln 1.1 - 1
    k3 = lambda r: 1 / r + math.log(r) - 1  # noqa: E731
    out = LOSSES.build("grpo", token_logp=tl, ref_token_logp=torch.zeros(2, 2), mask=mask, rewards=torch.tensor([1.0, 0.0]),
                       group=torch.tensor([0, 0]), eps=0.0, kl_coef=1.0)
    kl = ((k3(1.5) + k3(0.9)) / 2 + k3(1.1)) / 2
    assert out.loss.item() == pytest.approx(0.025 + kl, abs=1e-6)


def test_rloo_loss_by_hand():
    # rewards [1, 0, 0]: leave-one-out advantages [1 - 0, 0 - 0.5, 0 - 0.5] = [1, -0.5, -0.5]
    # logp [-1, -2, -3] -> loss = -mean(-1, 1, 1.5) = -0.5
    logp, mask = seq([-1.0, -2.0, -3.0])
    out = LOSSES.build("rloo", token_logp=logp, ref_token_logp=logp, mask=mask, rewards=torch.tensor([1.0, 0.0, 0.0]),
                       group=torch.zeros(3, dtype=torch.long))
    assert out.loss.item() == pytest.approx(-0.5)
    # a prompt with one response has no leave-one-out baseline: advantage 0, loss 0
    logp, mask = seq([-1.0])
    assert LOSSES.build("rloo", token_logp=logp, ref_token_logp=logp, mask=mask, rewards=torch.tensor([1.0]),
                        group=torch.zeros(1, dtype=torch.long)).loss.item() == 0.0


def test_length_reward_matches_the_paper():
    # lengths [10, 20, 30, 40]: lambda = 0.5 - (len - 10) / 30 = [0.5, 0.1667, -0.1667, -0.5]
    # correct [1, 1, 0, 0] -> [0.5, 0.1667, min(0, -0.1667), min(0, -0.5)]
    r = length_reward(torch.tensor([10, 20, 30, 40]), torch.tensor([1, 1, 0, 0]), torch.zeros(4, dtype=torch.long))
    assert r.tolist() == pytest.approx([0.5, 1 / 6, -1 / 6, -0.5])
    # a wrong short answer never gains: lambda 0.5 -> min(0, 0.5) = 0; min/max are per prompt
    r = length_reward(torch.tensor([10, 40, 5, 5]), torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1, 1]))
    assert r.tolist() == pytest.approx([0.0, -0.5, 0.0, 0.0])  # prompt 1: all lengths equal -> 0
    assert length_penalty_weight(3, 5, 0.2) == 0.0 and length_penalty_weight(5, 5, 0.2) == 0.2


def test_total_reward_keeps_partial_credit_and_adds_length_and_repeat_terms():
    from vlrl.rewards.base import RewardResult
    from vlrl.rewards.combine import score_trajectories
    from vlrl.types import Sample

    # prompt a: reward values [1, 0.25, 0] (partial credit passes through), lengths [10, 20, 30]
    #   correct = r >= 1 -> [T, F, F]; lambda = 0.5 - (len - 10) / 20 = [0.5, 0, -0.5]
    #   length reward [0.5, min(0, 0), min(0, -0.5)] = [0.5, 0, -0.5], weight 0.2 -> [0.1, 0, -0.1]
    #   the third was cut by repeat detection: -0.3 -> totals [1.1, 0.25, -0.4]
    # prompt b: one response, reward 1, all lengths equal -> length reward 0 -> total 1
    a, b = Sample(id="a", question="?", answer="1"), Sample(id="b", question="?", answer="1")
    values = {"r1": 1.0, "r2": 0.25, "r3": 0.0, "r4": 1.0}
    scored = score_trajectories(["r1", "r2", "r3", "r4"], [a, a, a, b], [10, 20, 30, 5],
                                ["stop", "stop", "repeat", "stop"], lambda text, s: RewardResult(values[text]),
                                length_weight=0.2, repeat_penalty=0.3)
    assert scored.rewards.tolist() == pytest.approx([1.1, 0.25, -0.4, 1.0])
    assert scored.correct.tolist() == [True, False, False, True] and scored.group.tolist() == [0, 0, 0, 1]


def test_prioritized_frequencies_follow_one_minus_success():
    from vlrl.algos.sampling import prioritized_weights, sample_prompts
    s = torch.tensor([0.0, 0.5, 0.9, 1.0])
    # weights max(1 - s, 0.05) = [1, 0.5, 0.1, 0.05] / 1.65
    w = prioritized_weights(s, floor=0.05)
    assert w.tolist() == pytest.approx([1 / 1.65, 0.5 / 1.65, 0.1 / 1.65, 0.05 / 1.65])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(4000):
        counts[sample_prompts(1, [1, 1, 1, 1], s, 0, "prioritized", generator=g)[0]] += 1
    assert (counts / 4000).tolist() == pytest.approx(w.tolist(), abs=0.03)


def test_curriculum_switches_levels_and_combines_with_priorities():
    from vlrl.algos.sampling import CurriculumStage, allowed_levels, sample_prompts
    stages = [CurriculumStage(0, []), CurriculumStage(24, [4, 5])]
    assert allowed_levels(23, stages) == [] and allowed_levels(24, stages) == [4, 5]
    diffs = [1, 2, 4, 5, None]
    succ = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    picks = sample_prompts(3, diffs, succ, 30, "curriculum+prioritized", stages, floor=0.05,
                           generator=torch.Generator().manual_seed(1))
    assert sorted(picks) == [2, 3, 4]  # only levels 4, 5 and the unknown level remain after iteration 24
    first = [sample_prompts(1, diffs, succ, 30, "curriculum+prioritized", stages, floor=0.05,
                            generator=torch.Generator().manual_seed(s))[0] for s in range(200)]
    assert first.count(2) < 20  # the solved prompt (weight 0.05 vs 1 + 1) is rarely drawn first
    # a stage naming levels no prompt has (a curated set's pass-rate levels, say): a warning, every level
    with pytest.warns(UserWarning, match=r"allows levels \[5\] but no prompt has them \(levels present: \[1, 2\]\)"):
        picks = sample_prompts(2, [1, 2], torch.zeros(2), 30, "curriculum", [CurriculumStage(0, [5])])
    assert sorted(picks) == [0, 1]


def test_success_tracker_initialises_from_pass_rates():
    from vlrl.algos.sampling import SuccessTracker
    t = SuccessTracker(["a", "b"], init={"a": 0.8}, default=0.5, momentum=0.5)
    t.update("b", 1.0)  # 0.5 * 0.5 + 0.5 * 1.0 = 0.75
    assert t.rates.tolist() == pytest.approx([0.8, 0.75])


def test_no_repeat_draws_unseen_prompts_until_too_few_remain():
    from vlrl.algos.sampling import SuccessTracker, sample_prompts
    t = SuccessTracker([str(i) for i in range(10)])
    g = torch.Generator().manual_seed(0)
    draws = [t.mark_drawn(sample_prompts(3, [1] * 10, t.rates, it, "uniform", generator=g, drawn=t.drawn))
             for it in range(3)]
    assert all(len(d) == 3 for d in draws)  # every draw of the first 9 prompts is a first draw
    assert len({i for d in draws for i in d}) == 9
    last = sample_prompts(3, [1] * 10, t.rates, 3, "uniform", generator=g, drawn=t.drawn)  # 1 unseen < 3: all
    assert len(set(last)) == 3 and t.mark_drawn(last) == [i for i in last if i not in {j for d in draws for j in d}]
    state = t.state_dict()  # the mask is checkpointed with the rates
    u = SuccessTracker([str(i) for i in range(10)])
    u.load_state_dict(state)
    assert torch.equal(u.drawn, t.drawn) and int(u.drawn.sum()) >= 9
    assert u.mark_drawn(draws[0]) == []


def test_group_parts_keep_groups_whole_and_balance_rows():
    from vlrl.algos.update import group_parts, micro_batches

    group = [0, 0, 1, 1, 2, 2, 0, 3, 3, 3]  # group 0 is not contiguous (a continued trajectory)
    parts = group_parts(group, 2)
    assert parts == [[[0, 1, 6], [2, 3]], [[4, 5], [7, 8, 9]]]
    assert sorted(i for p in parts for g in p for i in g) == list(range(10))
    assert group_parts([], 3) == [[], [], []]
    assert micro_batches(parts[0], 4) == [[0, 1, 6], [2, 3]]
    assert micro_batches([[0], [1], [2, 3, 4, 5, 6]], 2) == [[0, 1], [2, 3, 4, 5, 6]]


def test_sampling_mismatch_by_hand():
    """|ref - sampled| over the tokens the sampler wrote (not NaN): row 0 scores 2 tokens, row 1 one;
    diffs |0.1 - 0.0| = 0.1, |-0.5 - -0.4| = 0.1, |-1.0 - -1.4| = 0.4 -> mean 0.6 / 3 = 0.2, max 0.4."""
    from vlrl.algos.update import sampling_mismatch

    nan = float("nan")
    ref = torch.tensor([[9.0, 0.1, -0.5], [9.0, 9.0, -1.0]])
    sampled = torch.tensor([[nan, 0.0, -0.4], [nan, nan, -1.4]])
    m = sampling_mismatch(ref, sampled)
    assert m["sampling_logprob_diff_mean"] == pytest.approx(0.2) and m["sampling_logprob_diff_max"] == pytest.approx(0.4)
    assert sampling_mismatch(None, None) == {}  # nothing sampled this iteration: no metric, no division by 0


def test_kl_k3_by_hand():
    # d = log pi - log pi_ref per token: [log 2, -log 2, 0 (masked out), 0]
    # exp(d) - 1 - d: [2 - 1 - 0.693147, 0.5 - 1 + 0.693147, -, 0] = [0.306853, 0.193147, -, 0] -> sum 0.5
    from vlrl.algos.base import kl_k3

    ref = torch.zeros(1, 4)
    logp = torch.tensor([[math.log(2), -math.log(2), 5.0, 0.0]])
    mask = torch.tensor([[True, True, False, True]])
    assert kl_k3(logp, ref, mask).item() == pytest.approx(0.5, abs=1e-6)
    assert kl_k3(ref, ref, mask).item() == 0.0  # nothing moved: exactly 0


def test_optimizer_schedule_warms_up_each_new_optimizer_and_decays_over_the_run():
    from vlrl.config import OptimConfig
    from vlrl.training import OptimizerSchedule, build_optimizer

    w = torch.nn.Parameter(torch.zeros(2, 2))
    cfg = OptimConfig(lr=1.0, warmup_steps=4, schedule="linear", min_lr_ratio=0.0)
    opt = build_optimizer([w], cfg)
    sched = OptimizerSchedule(opt, cfg, total=10)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    # warm (local + 1) / 4 times linear decay 1 - done / 10: step 0: 1/4 * 1; 1: 2/4 * 0.9; 2: 3/4 * 0.8;
    # 3: 1 * 0.7; 4: 0.6; 5: 0.5
    assert lrs == pytest.approx([0.25, 0.45, 0.6, 0.7, 0.6, 0.5])
    # a fresh optimizer after 5 steps (RL's per-iteration reset) warms up again; the decay goes on
    opt2 = build_optimizer([w], cfg)
    assert OptimizerSchedule(opt2, cfg, total=10, done=5).factor() == pytest.approx(0.25 * 0.5)
    # a resumed optimizer (its lr already scheduled) keeps its base lr and its warm-up position
    opt.load_state_dict(opt.state_dict())
    assert OptimizerSchedule(opt, cfg, total=10, done=5, local=5).factor() == pytest.approx(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_reference_logprobs_reuse_the_sampler_and_rescore_only_rows_it_did_not_write():
    """Row 0's loss tokens (positions 1, 2) were all sampled this iteration: its reference is the sampler's.
    Row 1's loss token at position 1 came from an older policy (NaN): row 1 is scored again, whole.
    "recompute" scores both rows."""
    from processors.collate import Batch
    from vlrl.algos.update import reference_logprobs

    class Scorer:  # log-prob 10 * row id + position, so a rescored row is recognisable
        calls = []

        def response_logprobs(self, b, temperature=1.0):
            self.calls.append(b.input_ids[:, 0].tolist())
            rows = b.input_ids[:, :1].float() * 10
            return rows + torch.arange(b.input_ids.shape[1] - 1).float(), None

    nan = float("nan")
    ids = torch.tensor([[0, 5, 6, 7], [1, 5, 6, 7]])  # the first token is the row id
    batch = Batch(ids, torch.ones_like(ids), None, [0, 0],
                  response_mask=torch.tensor([[False, False, True, True], [False, True, True, False]]),
                  sample_ids=["a", "b"], prompt_lens=[2, 1])
    sampled = torch.tensor([[nan, -0.1, -0.2], [nan, -0.3, nan]])
    m = Scorer()
    ref, scored = reference_logprobs(m, batch, sampled, micro=4, mode="sampler")
    assert scored == 1 and m.calls == [[1]]
    assert torch.allclose(ref[0], torch.tensor([0.0, -0.1, -0.2]))  # the sampler's (0 where no loss token)
    assert torch.allclose(ref[1], torch.tensor([10.0, 11.0, 12.0]))  # rescored
    ref, scored = reference_logprobs(m, batch, sampled, micro=4, mode="recompute")
    assert scored == 2 and torch.allclose(ref, torch.tensor([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]]))
    m.calls.clear()  # row 1 inert (the update runs no forward for it): not scored either
    ref, scored = reference_logprobs(m, batch, sampled, micro=4, skip=torch.tensor([False, True]))
    assert scored == 0 and m.calls == [] and torch.allclose(ref[1], torch.tensor([0.0, -0.3, 0.0]))
    sampled[1, 0] = -0.5  # row 1's loss tokens now all sampled: nothing is scored
    assert reference_logprobs(m, batch, sampled, micro=4)[1] == 0
