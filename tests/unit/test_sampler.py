"""The resumable batch sampler of the supervised stages, plain and grouped by length."""

from __future__ import annotations

import itertools
import random

from vlrl.training import ResumableBatchSampler


def epoch_batches(sampler: ResumableBatchSampler, n_batches: int) -> list[list[int]]:
    return list(itertools.islice(iter(sampler), n_batches))


def test_grouped_epoch_is_a_permutation_of_full_batches_with_little_padding():
    rng = random.Random(0)
    n, B = 1000, 32
    lengths = [rng.randint(20, 240) for _ in range(n)]
    plain = ResumableBatchSampler(n, B, seed=3)
    grouped = ResumableBatchSampler(n, B, seed=3, lengths=lengths, group_window=8)
    per_epoch = n // B  # 31 full batches; the 8-sample tail is dropped
    for s in (plain, grouped):
        batches = epoch_batches(s, per_epoch)
        flat = [i for b in batches for i in b]
        assert all(len(b) == B for b in batches) and len(set(flat)) == len(flat) == per_epoch * B
    # padded tokens per batch = B * longest; grouping by length must cut padding waste at least in half
    def waste(s):
        return sum(B * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in epoch_batches(s, per_epoch))
    fresh = [ResumableBatchSampler(n, B, seed=3), ResumableBatchSampler(n, B, seed=3, lengths=lengths, group_window=8)]
    assert waste(fresh[1]) < 0.5 * waste(fresh[0])


def test_grouped_sampler_is_deterministic_resumable_and_sliced_by_rank():
    lengths = [(7 * i) % 50 for i in range(200)]
    a = epoch_batches(ResumableBatchSampler(200, 16, seed=1, lengths=lengths), 20)  # crosses an epoch boundary
    resumed = ResumableBatchSampler(200, 16, seed=1, lengths=lengths)
    resumed.epoch, resumed.pos = 0, 5 * 16  # the position saved after 5 batches
    assert epoch_batches(resumed, 15) == a[5:]
    ranks = [epoch_batches(ResumableBatchSampler(200, 16, seed=1, rank=r, world=2, lengths=lengths), 20) for r in (0, 1)]
    assert all(sorted(x + y) == sorted(b) for x, y, b in zip(ranks[0], ranks[1], a))
