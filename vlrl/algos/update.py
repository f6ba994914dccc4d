"""One RL iteration's policy update: reference log-probs, then minibatch optimizer steps.

The reference pi_theta_i is the policy that sampled this iteration's tokens, so their log-probs are the
sampler's (``reference: sampler``, the default): only rows holding loss tokens that older policies wrote
(partial rollouts without ``mask_old_segments``) are scored again. ``reference: recompute`` scores every
row, for exactness checks (``sampling_logprob_diff_max`` then measures sampler against scorer).

Responses are split into ``ceil(global responses / minibatch_size)`` minibatches per pass; each process
splits its own rows into that many parts of whole prompt groups (a part may be empty) and runs them in
micro-batches of whole groups, so every loss call sees complete groups (exact group baselines, also
when partial rollouts finish a prompt's k responses in different iterations). Every loss is a mean
over responses, so a micro-batch's loss is weighted by its share of the *global* minibatch and
gradients are summed over processes: the update equals a single process's update on the same global
minibatch. On a sharded model (``vlrl.sharding``) the engine sums the gradients, and every process runs
as many forwards as the busiest one (each forward all-gathers the shards): the extra ones are
zero-weight "idle" forwards on one of its rows, or on a one-token placeholder when it has none.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from vlrl.algos.base import kl_k3
from vlrl.algos.group import group_rows
from processors.collate import Batch
from vlrl.distributed import all_max, all_sum, gather_objects, sum_gradients
from vlrl.guards import require_finite
from vlrl.sharding import is_sharded


def group_parts(group: list[int], parts: int) -> list[list[list[int]]]:
    """Split rows into ``parts`` lists of whole groups (rows of a group stay together, so each loss call
    sees complete groups and their baselines are exact), balanced by row count; groups in order of first
    appearance. Returns, per part, its groups' row lists."""
    out: list[list[list[int]]] = [[] for _ in range(parts)]
    target, done, p = len(group) / parts, 0, 0
    for members in group_rows(group):
        while p < parts - 1 and done >= target * (p + 1):
            p += 1
        out[p].append(members)
        done += len(members)
    return out


def micro_batches(groups: list[list[int]], size: int, cost: Callable[[list[int]], int] = len) -> list[list[int]]:
    """Pack whole groups into micro-batches of at most ``size`` rows by ``cost`` (the rows a forward runs:
    all of them, or the non-inert ones under ``skip_inert``); a larger group is one micro-batch."""
    out: list[list[int]] = []
    for members in groups:
        if out and cost(out[-1]) + cost(members) <= size:
            out[-1] = out[-1] + members
        else:
            out.append(list(members))
    return out


def placeholder_batch(model) -> Batch:
    """A one-row text scoring batch with one response token: what an idle forward runs on a process
    that holds no rows (any token but the image placeholder)."""
    tok = 1 if model.image_token_id == 0 else 0
    return Batch(torch.full((1, 2), tok, dtype=torch.long), torch.ones(1, 2, dtype=torch.long), None, [0],
                 response_mask=torch.tensor([[False, True]]), sample_ids=["(idle)"], prompt_lens=[1]).to(model.device)


def idle_forwards(model, batch: Batch | None, temperature: float, n: int, grad: bool = False) -> None:
    """``n`` forwards (with ``grad`` also backwards of zero) that change nothing, so that this process
    joins the collectives of forwards other processes run (sharded models only; ``n`` from
    :func:`lockstep`)."""
    if n <= 0:
        return
    rows = batch.rows([0]) if batch is not None and len(batch) else placeholder_batch(model)
    with torch.set_grad_enabled(grad):
        for _ in range(n):
            logp, _ = model.response_logprobs(rows, temperature=temperature)
            if grad:
                (logp.sum() * 0.0).backward()


def lockstep(model, steps: int) -> int:
    """Idle forwards this process adds to its ``steps`` so that every process runs the same number (0 on
    a model that is not sharded: forwards there hold no collectives). Call it before this process's own
    forwards: it is a collective itself, and a process with none would otherwise wait in it while the
    others wait in their first forward's all-gather."""
    return int(all_max(float(steps))) - steps if is_sharded(model) else 0


def batch_logprobs(model, batch, micro: int, temperature: float = 1.0) -> torch.Tensor:
    """(B, T-1) token log-probs of a scoring batch under the current weights, without gradient, in
    micro-batches of similar length (before an update: pi_theta_i's)."""
    B, T = batch.input_ids.shape
    ref = torch.zeros(B, T - 1, device=batch.input_ids.device)
    order = sorted(range(B), key=lambda i: int(batch.attention_mask[i].sum()))  # similar lengths together
    idle = lockstep(model, math.ceil(B / micro))
    with torch.no_grad():
        for s in range(0, B, micro):
            idx = order[s : s + micro]
            part = model.response_logprobs(batch.rows(idx), temperature=temperature)[0]
            ref[idx, : part.shape[1]] = part
        idle_forwards(model, batch, temperature, idle)
    return ref


def reference_logprobs(model, batch, sampled: torch.Tensor | None, micro: int, temperature: float = 1.0,
                       mode: str = "sampler", skip: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(B, T-1) log pi_theta_i at every loss token, and how many rows were scored for it.

    ``mode`` "sampler": the sampler's log-probs (``sampled``, NaN where it did not write the token this
    iteration) wherever it wrote a token; rows with a loss token it did not write are scored whole under
    the current weights, except the rows ``skip`` (B,) marks (inert rows the update runs no forward for:
    their entries, 0 where the sampler wrote nothing, stand in for their log-probs too, so their log-ratio
    and advantage terms are 0 either way). "recompute" (or ``sampled`` None): every row scored. The two
    agree to float error: the sampler ran the same weights at the same temperature (``sampling_mismatch``)."""
    if mode == "recompute" or sampled is None:
        return batch_logprobs(model, batch, micro, temperature), len(batch)
    sampled = sampled.to(batch.input_ids.device)
    missing = torch.isnan(sampled)
    ref = torch.where(missing, torch.zeros_like(sampled), sampled)
    unscored = (missing & batch.response_mask[:, 1:]).any(-1)
    if skip is not None:
        unscored &= ~skip.to(unscored.device)
    need = unscored.nonzero().flatten().tolist()
    if need:
        part = batch_logprobs(model, batch.rows(need), micro, temperature)
        ref[need, : part.shape[1]] = part
    else:  # another process may rescore rows: join its forwards
        idle_forwards(model, batch, temperature, lockstep(model, 0))
    return ref, len(need)


def sampling_mismatch(ref: torch.Tensor | None, sampled: torch.Tensor | None) -> dict[str, float]:
    """|log pi_theta_i - log pi_sampler| over the tokens the sampler wrote this iteration (``sampled`` (B, T-1),
    NaN elsewhere), mean and max over every process: 0 up to float error when rollouts and the loss see
    one distribution; a large value means the update is off-policy (different weights, temperature or
    masking at sampling time). Collective."""
    diff = torch.empty(0)
    if ref is not None and sampled is not None:
        both = ~torch.isnan(sampled)
        diff = (ref.detach().float().cpu()[both] - sampled[both]).abs()
    total, count = all_sum([float(diff.sum()), float(diff.numel())])
    peak = max(gather_objects(float(diff.max()) if diff.numel() else 0.0))
    return {"sampling_logprob_diff_mean": total / count, "sampling_logprob_diff_max": peak} if count else {}


@dataclass
class UpdateConfig:
    """The sizes and limits of one iteration's update (the RL stage builds it from its config).

    Attributes:
        passes: passes over the iteration's responses (each pass = every minibatch once).
        minibatch_size: responses per optimizer step (global, over every process).
        micro_batch_size: responses per forward/backward; gradients accumulate to the minibatch.
        grad_clip: max global gradient norm.
        temperature: the rollout temperature; log-probs are taken under softmax(logits / temperature).
        target_kl: stop the iteration's remaining optimizer steps once the mean per-token
            log pi_theta_i - log pi_theta on the minibatch just scored exceeds this (0 = never): a trust
            region on how far one rollout batch may move the policy, whatever the learning rate.
        reference: where log pi_theta_i comes from: "sampler" (its recorded log-probs; older segments
            rescored) or "recompute" (a scoring pass over every row; see :func:`reference_logprobs`).
        skip_inert: run no forward or backward for the rows the loss declares inert (``loss_fn.inert_rows``:
            zero advantage; their log-probs enter the loss as pi_theta_i's, so the group baselines stay
            exact and their gradient is 0). Exact at an iteration's first step; after it, it drops those
            rows' share of a regulariser on the log-ratio. Losses without ``inert_rows`` and sharded
            models (whose forwards are collectives) run every row.
    """

    passes: int = 2
    minibatch_size: int = 64
    micro_batch_size: int = 16
    grad_clip: float = 1.0
    temperature: float = 1.0
    target_kl: float = 0.0
    reference: str = "sampler"
    skip_inert: bool = False

    def __post_init__(self) -> None:
        if self.reference not in ("sampler", "recompute"):
            raise ValueError(f"reference must be 'sampler' or 'recompute', got '{self.reference}'")


def policy_update(model, batch, rewards: torch.Tensor | None, group: torch.Tensor | None, loss_fn: Callable,
                  hyper: dict[str, Any], opt, cfg: UpdateConfig, sampled: torch.Tensor | None = None,
                  scheduler=None, where: str = "policy update") -> dict:
    """``cfg.passes`` passes of optimizer steps over this process's ``batch`` (B responses; B may differ per
    process, and be 0: an empty batch, or None). Returns the last step's loss metrics, loss, grad norm and mean
    token entropy, the optimizer steps taken, the approximate KL of the last minibatch scored, and with
    ``sampled`` (the sampler's log-probs, see ``sampling_mismatch``) how far the loss's starting log-probs
    are from them. ``scheduler`` (optional) steps after every optimizer step. A non-finite loss or gradient
    norm raises :class:`vlrl.guards.NonFiniteError` (naming ``where`` and the step) before the optimizer
    steps. Collective under several processes.
    """
    B = len(batch) if batch is not None else 0  # an empty process still joins every collective below
    n_mb = max(1, math.ceil(all_sum([float(B)])[0] / cfg.minibatch_size))
    micro = max(1, min(cfg.micro_batch_size, cfg.minibatch_size))
    inert = inert_rows(model, loss_fn, rewards, group, hyper, cfg) if B else None
    if B:
        ref, rescored = reference_logprobs(model, batch, sampled, micro, cfg.temperature, cfg.reference, inert)
    else:
        ref, rescored = None, 0  # join the reference forwards of the processes that have rows
        idle_forwards(model, None, cfg.temperature, lockstep(model, 0))
    stats: dict = sampling_mismatch(ref, sampled)  # under "sampler": 0 except on the rows scored again
    stats["reference_rows_scored"] = all_sum([float(rescored)])[0]
    parts = group_parts(group.tolist() if B else [], n_mb)
    lengths = batch.attention_mask.sum(-1).tolist() if B else []  # groups of similar length share micro-batches
    totals = all_sum([float(sum(len(g) for g in part)) for part in parts])  # rows per global minibatch
    stats["inert_rows_skipped"] = all_sum([float(inert.sum()) if inert is not None else 0.0])[0]
    cost = len if inert is None else (lambda rows: sum(not inert[i] for i in rows))
    taken = 0
    for _ in range(cfg.passes):
        for part, total in zip(parts, totals):
            opt.zero_grad(set_to_none=True)
            chunks = micro_batches(sorted(part, key=lambda g: max(lengths[i] for i in g)), micro, cost)
            chunks += [[]] * lockstep(model, len(chunks))  # idle micro-batches: every process runs as many
            metrics, sums = _accumulate(model, batch, ref, rewards, group, chunks, total, loss_fn, hyper, cfg,
                                        inert)
            loss, ent_sum, n_tok, kl_sum = all_sum(sums)
            kl = kl_sum / max(1.0, n_tok)
            stats.update({**metrics, "loss": loss, "entropy": ent_sum / max(1.0, n_tok), "approx_kl": kl})
            if cfg.target_kl > 0 and kl > cfg.target_kl:  # the same decision on every process
                stats.update(optimizer_steps=taken, kl_stopped=1)
                return stats
            step = f"{where}, optimizer step {taken + 1}"
            require_finite("loss", loss, step)  # summed over processes: every process stops alike
            if not is_sharded(model):  # a sharded model's engine reduced them in the backward
                sum_gradients(model.parameters())
            stats["grad_norm"] = grad_norm(model, cfg.grad_clip)
            require_finite("gradient norm", stats["grad_norm"], f"{step} (finite loss {loss:.4g})")
            opt.step()
            if scheduler is not None:
                scheduler.step()
            taken += 1
    stats.update(optimizer_steps=taken, kl_stopped=0)
    return stats


def grad_norm(model, clip: float) -> float:
    """Clip the gradients to global norm ``clip``; returns the norm before clipping (over every shard)."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def inert_rows(model, loss_fn: Callable, rewards: torch.Tensor, group: torch.Tensor, hyper: dict,
               cfg: UpdateConfig) -> torch.Tensor | None:
    """(B,) bool: the rows ``cfg.skip_inert`` lets the update skip (None: run every row)."""
    if not cfg.skip_inert or not hasattr(loss_fn, "inert_rows"):
        return None
    if is_sharded(model):  # a skipped forward would leave the other processes waiting in its all-gather
        warnings.warn("skip_inert is ignored on a sharded model: every row runs (a resume of this run on one "
                      "process does the same math with skip_inert_rows=false)", stacklevel=2)
        return None
    return loss_fn.inert_rows(rewards, group, **hyper).cpu()


def chunk_logprobs(model, batch, ref: torch.Tensor, idx: list[int], run: list[int], temperature: float):
    """Log-probs of the rows ``idx`` for the loss, with a forward over ``run`` (a subset) only: (len(idx), W)
    with the other rows' entries pi_theta_i's (``ref``, no gradient); also the forward's (len(run), w)
    log-probs and token entropies."""
    logp, ent = model.response_logprobs(batch.rows(run), with_entropy=True, temperature=temperature)
    if len(run) == len(idx):
        return logp, logp, ent
    t = torch.tensor(idx, device=ref.device)
    full = ref[t].detach().clone()
    at = torch.tensor([idx.index(i) for i in run], device=ref.device)
    return full.index_put((at,), F.pad(logp, (0, full.shape[1] - logp.shape[1]))), logp, ent


def _accumulate(model, batch, ref, rewards, group, chunks: list[list[int]], total: float, loss_fn: Callable,
                hyper: dict, cfg: UpdateConfig, inert: torch.Tensor | None = None) -> tuple[dict, list[float]]:
    """Backward of one minibatch's micro-batches (``chunks`` of row indices), each loss weighted by its
    share of the ``total`` rows of the global minibatch; rows marked ``inert`` run no forward (a chunk of
    inert rows alone is skipped). Returns the last loss metrics and this process's sums: weighted loss,
    entropy, response tokens, and KL(pi_theta_i || pi_theta) summed over tokens (``kl_k3``: the tokens
    were sampled from pi_theta_i), the last three over the rows that ran."""
    mask = batch.response_mask[:, 1:] if batch is not None else None
    metrics, sums = {}, [0.0, 0.0, 0.0, 0.0]
    for idx in chunks:
        if not idx:
            idle_forwards(model, batch, cfg.temperature, 1, grad=True)
            continue
        run = idx if inert is None else [i for i in idx if not inert[i]]
        if not run:
            continue
        logp, logp_run, ent = chunk_logprobs(model, batch, ref, idx, run, cfg.temperature)
        t, tr, w = torch.tensor(idx, device=mask.device), torch.tensor(run, device=mask.device), logp_run.shape[1]
        out = loss_fn(logp, ref[t, : logp.shape[1]], mask[t, : logp.shape[1]], rewards[t], group[t], **hyper)
        share = len(idx) / max(1.0, total)
        (out.loss * share).backward()
        m = mask[tr, :w]
        sums[0] += out.loss.item() * share
        sums[1] += float((ent.detach() * m).sum())
        sums[2] += float(m.sum())
        sums[3] += float(kl_k3(logp_run, ref[tr, :w], m))
        metrics = out.metrics
    return metrics, sums
