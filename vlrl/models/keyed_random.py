"""Counter-based random numbers: the uniform a row draws at a decode step is a hash of (row key, step).

A rollout's samples then depend only on each trajectory's key (seed, iteration, prompt id, sample
index), not on which process generated it, which rows shared its batch or what was drawn before: a run
resumed on a different number of processes draws the same responses (up to float differences in the
logits, which move a token only when a uniform falls within rounding of a CDF boundary).

The hash is lowbias32 (Chris Wellons' hash-prospector), a bijection on 32-bit integers; it runs on
Python ints and on int64 tensors alike, with each 32-bit product split in 16-bit halves so that no
intermediate leaves int64.
"""

from __future__ import annotations

import zlib
from typing import TypeVar

import torch

MASK32 = 0xFFFFFFFF
T = TypeVar("T", int, torch.Tensor)


def _mul32(x: T, c: int) -> T:
    """(x * c) mod 2^32 for x in [0, 2^32): x * c_lo + ((x * c_hi) mod 2^16) * 2^16, every term < 2^49."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def hash32(x: T) -> T:
    """lowbias32 of x in [0, 2^32) (an int, or an int64 tensor elementwise)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def mix(*values: int | str) -> int:
    """One 32-bit key from several ints (each taken mod 2^32) or strings (by CRC-32)."""
    h = 0x9E3779B9
    for v in values:
        v = zlib.crc32(v.encode()) if isinstance(v, str) else v
        h = hash32(h ^ (v & MASK32))
    return h


def uniforms(keys: torch.Tensor, step: int | torch.Tensor) -> torch.Tensor:
    """(R,) int64 keys in [0, 2^32) -> (R,) float32 uniforms in [0, 1) for decode step ``step``
    (24 bits: every value exact in float32, and never 1.0). Broadcasts: (R, 1) keys and (S,) steps give
    the (R, S) table of every step at once."""
    h = hash32(keys ^ hash32(step & MASK32))
    return (h >> 8).to(torch.float32) / float(1 << 24)
