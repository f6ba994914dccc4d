import torch

from vlrl.models.generation import draw
from vlrl.models.keyed_random import MASK32, hash32, mix, uniforms


def lowbias32_exact(x: int) -> int:
    """The reference: lowbias32 with Python's unbounded ints, each product reduced mod 2^32."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def test_hash_on_int64_tensors_equals_the_exact_32_bit_hash():
    """The split 16-bit products never leave int64: tensor results equal the big-int reference,
    including inputs near 2^32 where a plain int64 product x * c would overflow."""
    xs = [0, 1, 2, 12345, 0x7FFFFFFF, 0x80000000, MASK32 - 1, MASK32] + torch.randint(0, 2**32, (500,)).tolist()
    got = hash32(torch.tensor(xs, dtype=torch.long)).tolist()
    assert got == [lowbias32_exact(x) for x in xs] == [hash32(x) for x in xs]
    assert hash32(0x80000000) != hash32(0x80000001) and 0 <= min(got) and max(got) <= MASK32


def test_mix_depends_on_every_value_and_its_order():
    assert mix(0, 1, "a", 2) == mix(0, 1, "a", 2)
    assert len({mix(0, 1, "a", 2), mix(0, 1, "a", 3), mix(0, 1, "b", 2), mix(1, 0, "a", 2), mix(0, 2, "a", 1)}) == 5


def test_keyed_uniforms_are_uniform_and_independent_across_steps():
    """100,000 keys: each of 10 bins holds 10% within 0.6 points (about 6 standard errors of 0.095),
    consecutive steps are uncorrelated (|r| < 0.02, 6 s.e.), every value is in [0, 1), and keyed draws
    from [0.1, 0, 0.6, 0.3] land on each token with its probability."""
    keys = torch.tensor([mix(7, i) for i in range(100_000)], dtype=torch.long)
    u0, u1 = uniforms(keys, 0), uniforms(keys, 1)
    assert u0.dtype == torch.float32 and float(u0.min()) >= 0 and float(u0.max()) < 1
    freq = torch.histc(u0, bins=10, min=0, max=1) / len(u0)
    assert torch.allclose(freq, torch.full((10,), 0.1), atol=0.006)
    assert abs(float(torch.corrcoef(torch.stack([u0, u1]))[0, 1])) < 0.02
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).repeat(len(keys), 1)
    toks = draw(probs, u=u1)
    share = torch.bincount(toks, minlength=4).float() / len(toks)
    assert share[1] == 0 and torch.allclose(share, probs[0], atol=0.006)
    assert torch.equal(uniforms(keys[:5], 3), uniforms(keys[:5], 3))


def test_the_table_of_every_step_equals_the_step_by_step_uniforms():
    keys = torch.tensor([mix(3, i) for i in range(6)], dtype=torch.long)
    table = uniforms(keys[:, None], torch.arange(9))  # (6, 9): what generate hashes once per call
    assert table.shape == (6, 9)
    for step in range(9):
        assert torch.equal(table[:, step], uniforms(keys, step))
