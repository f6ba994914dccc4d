"""The few collectives the RL and curation stages need, the same code with 1 or N processes.

Under ``accelerate launch`` (any backend: gloo on CPU, NCCL on GPUs) the process group exists and these
are real collectives; in a plain ``python`` run they are identities. Data-parallel RL averages gradients
itself (``sum_gradients``) instead of wrapping the model in DDP, because each process may hold a
different number of finished trajectories (partial rollouts), and the exact global-batch mean needs each
process's loss weighted by its share of the global minibatch (sharded: ``vlrl.sharding``).
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """The main process (rank 0; the only one in a plain run): the one that writes files and logs."""
    return world()[0] == 0


PRECISIONS = ("auto", "fp32", "bf16")


def launcher_precision(requested: str, stage: str, allow_fp16: bool = False) -> str:
    """The precision a stage runs in: ``requested`` ("fp32", "bf16", or "auto": what the launcher asks
    for, i.e. accelerate's ``--mixed_precision`` / config file, bf16 when it says bf16, else fp32).
    fp16 needs loss scaling, which only accelerate's supervised trainer does (``allow_fp16``): there
    "auto" passes it on as "fp16"; elsewhere it is an error."""
    if requested not in PRECISIONS:
        raise ValueError(f"{stage}: precision must be one of {', '.join(PRECISIONS)}, got '{requested}'")
    if requested != "auto":
        return requested
    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if asked == "fp16" and not allow_fp16:
        raise ValueError(f"{stage}: the launcher asks for fp16 mixed precision, which {stage} does not run (fp16 "
                         f"needs loss scaling); launch with --mixed_precision bf16 or no, or set precision=bf16")
    return {"bf16": "bf16", "fp16": "fp16"}.get(asked, "fp32")


def init_from_launcher() -> None:
    """Join the process group ``accelerate launch`` / ``torchrun`` set up in the environment (no-op in a
    plain run). On a machine without GPUs the processes use gloo (accelerate only does that when asked
    for the CPU)."""
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())


def accelerator(**kwargs):
    """An ``accelerate.Accelerator`` that also forms a multi-process group on CPU-only machines."""
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available(), **kwargs)


def shutdown() -> None:
    """Wait for every process and tear the process group down (gloo can abort at exit otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    _, n = world()
    if n == 1:
        return [obj]
    out: list[Any] = [None] * n
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum of a list of floats over processes."""
    if world()[1] == 1:
        return list(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_max(value: float) -> float:
    """The largest ``value`` over processes."""
    if world()[1] == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def sum_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over processes (one flat all-reduce; a missing gradient counts as
    zeros, so a process with no rows in this minibatch still takes part)."""
    if world()[1] == 1:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p))
        offset += n


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
