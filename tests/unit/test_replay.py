"""Replay of earlier iterations' rewarded groups (vlrl.rollout.replay): what is kept, for how long, and how
the drawn groups join an update batch."""

import torch

from vlrl.rewards.combine import ScoredBatch
from vlrl.rollout.buffer import Trajectory
from vlrl.rollout.replay import GroupReplay, with_replayed
from vlrl.types import Sample


def batch(iteration, prompts, correct):
    """Trajectories of ``prompts`` (one per entry, group = prompt) with rewards 1 / 0 from ``correct``."""
    samples = {p: Sample(id=p, question=f"q {p}", answer="1") for p in dict.fromkeys(prompts)}
    trajs = []
    for n, p in enumerate(prompts):
        t = Trajectory(samples[p], started=iteration, key=n, finish="stop")
        t.add_segment([n + 1] * (n + 2), iteration)
        trajs.append(t)
    ids = {p: i for i, p in enumerate(samples)}
    c = torch.tensor(correct)
    scored = ScoredBatch(c.float(), c, torch.tensor([float(len(t.tokens)) for t in trajs]),
                         torch.tensor([ids[p] for p in prompts]), [])
    return trajs, scored, samples


def test_only_groups_with_a_correct_response_are_kept_and_they_age_out():
    r = GroupReplay(max_age=2)
    trajs, scored, _ = batch(0, ["a", "a", "b", "b", "c", "c"], [True, False, False, False, True, True])
    r.add(0, trajs, scored)
    assert [x.trajs[0].sample.id for x in r.items] == ["a", "c"]  # b: no correct response
    assert r.items[0].rewards == [1.0, 0.0] and r.items[0].correct == [True, False]
    trajs, scored, _ = batch(1, ["d", "d"], [True, True])
    r.add(1, trajs, scored)  # iteration 0's groups are drawable in iteration 2 (age 2), not in 3
    assert len(r) == 3
    r.add(2, [], ScoredBatch(torch.zeros(0), torch.zeros(0, dtype=torch.bool), torch.zeros(0),
                             torch.zeros(0, dtype=torch.long), []))
    assert [x.trajs[0].sample.id for x in r.items] == ["d"]


def test_draw_is_distinct_groups_and_the_store_survives_a_checkpoint():
    r = GroupReplay(max_age=3)
    trajs, scored, samples = batch(4, ["a", "a", "b", "c"], [True, True, True, True])
    r.add(4, trajs, scored)
    drawn = r.draw(5, torch.Generator().manual_seed(0))
    assert sorted(x.trajs[0].sample.id for x in drawn) == ["a", "b", "c"]  # all three, once each
    back = GroupReplay()
    back.load_state_dict(r.state_dict(), samples)
    assert back.max_age == 3 and [(x.iteration, x.rewards, x.correct) for x in back.items] == \
        [(x.iteration, x.rewards, x.correct) for x in r.items]
    assert [[(t.tokens, t.started, t.key, t.finish, [(s.start, s.end, s.iteration) for s in t.segments])
             for t in x.trajs] for x in back.items] == \
        [[(t.tokens, t.started, t.key, t.finish, [(s.start, s.end, s.iteration) for s in t.segments])
          for t in x.trajs] for x in r.items]


def test_replayed_groups_join_the_batch_whole_with_their_rewards_and_ids_of_their_own():
    """The iteration's own prompt "a" also appears in a replayed group: the two stay separate groups, so
    each keeps its own baseline (here 1/2 and 1)."""
    old = GroupReplay(max_age=2)
    t0, s0, _ = batch(0, ["a", "a", "z"], [True, True, True])
    old.add(0, t0, s0)
    t1, s1, _ = batch(1, ["a", "a", "b", "b"], [True, False, False, False])
    trajs, scored = with_replayed(t1, s1, old.draw(2, torch.Generator().manual_seed(1)), torch.Generator().manual_seed(2))
    assert len(trajs) == 7 and len(torch.unique(scored.group)) == 4
    for g in torch.unique(scored.group).tolist():  # every group: one prompt, one iteration, rows together
        rows = (scored.group == g).nonzero().flatten().tolist()
        assert rows == list(range(rows[0], rows[-1] + 1))
        assert len({(trajs[i].sample.id, trajs[i].started) for i in rows}) == 1
    means = {(trajs[i].sample.id, trajs[i].started): float(scored.rewards[scored.group == scored.group[i]].mean())
             for i in range(7)}
    assert means == {("a", 1): 0.5, ("b", 1): 0.0, ("a", 0): 1.0, ("z", 0): 1.0}
    assert scored.lengths.tolist() == [float(len(t.tokens)) for t in trajs]
    assert scored.correct.tolist() == [bool(r) for r in scored.rewards.tolist()]
