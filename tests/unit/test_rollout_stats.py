"""The RL stage's per-iteration bookkeeping, by hand: which groups an update can learn from and the
metrics an iteration logs."""

import pytest
import torch

from vlrl.rewards.combine import ScoredBatch
from vlrl.rollout.stats import iteration_metrics, keep_informative


def test_keep_informative_drops_the_groups_whose_rewards_are_all_equal():
    # groups 0: (1, 0) informative; 1: (1, 1) all equal; 2: (0.2, 0.2, 0.5) informative; 3: (0,) alone
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.2, 0.2, 0.5, 0.0])
    group = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    scored = ScoredBatch(rewards=rewards, correct=rewards >= 1, lengths=torch.arange(8) + 10, group=group, errors=[])
    trajs = list("abcdefgh")
    kept, sub, (dropped, groups) = keep_informative(trajs, scored)
    assert kept == list("abefg") and (dropped, groups) == (2, 4)
    assert sub.rewards.tolist() == pytest.approx([1.0, 0.0, 0.2, 0.2, 0.5])
    assert sub.lengths.tolist() == [10, 11, 14, 15, 16] and sub.group.tolist() == [0, 0, 2, 2, 2]
    assert sub.correct.tolist() == [True, False, False, False, False]


def test_iteration_metrics_by_hand():
    # (modality, reward, correct, length, fresh): two image rows (one fresh), two text rows (both fresh)
    records = [("image", 1.0, 1, 100, 1), ("image", 0.0, 0, 200, 0), ("text", 0.5, 0, 40, 1), ("text", 1.0, 1, 60, 1)]
    m = iteration_metrics(records, groups=(1, 4), buffer=(3, 1), times={"rollout": 3.0, "train": 1.0}, errors=2)
    # reward mean (1 + 0 + 0.5 + 1) / 4 = 0.625; accuracy 2 / 4; mean length 400 / 4 = 100
    assert m["reward"] == pytest.approx(0.625) and m["accuracy"] == 0.5 and m["length_mean"] == 100
    # p95 of (40, 60, 100, 200) by linear interpolation: rank 0.95 * 3 = 2.85 -> 100 + 0.85 * 100 = 185
    assert m["length_p95"] == pytest.approx(185.0)
    assert m["zero_variance_groups"] == 0.25 and (m["buffer"], m["expired"], m["trajectories"]) == (3, 1, 4)
    assert m["verifier_errors"] == 2 and m["time_rollout"] == 3.0 and m["time_train"] == 1.0
    assert m["tokens_per_s"] == pytest.approx(400 / 4.0)
    # fresh rows: image #1 (correct), text #1 (wrong), text #2 (correct) -> 2 / 3 of 3 / 4 rows
    assert m["accuracy_fresh"] == pytest.approx(2 / 3) and m["fresh_fraction"] == 0.75
    assert m["accuracy_fresh/image"] == 1.0 and m["accuracy_fresh/text"] == 0.5
    assert m["accuracy/image"] == 0.5 and m["length/image"] == 150 and m["reward/text"] == pytest.approx(0.75)


def test_iteration_metrics_without_fresh_rows_logs_no_fresh_accuracy():
    m = iteration_metrics([("text", 1.0, 1, 10, 0)], groups=(0, 1), buffer=(0, 0), times={"rollout": 1.0}, errors=0)
    assert "accuracy_fresh" not in m and "accuracy_fresh/text" not in m and m["accuracy/text"] == 1.0
