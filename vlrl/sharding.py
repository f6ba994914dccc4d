"""Fully sharded data parallel (FSDP2) for the RL and DPO updates, and the full-weight copy rollouts use.

Under ``accelerate launch --config_file configs/accelerate/fsdp.yaml`` every process holds 1/N of each
parameter, gradient and Adam moment (``torch.distributed.fsdp.fully_shard``: DTensor parameters
sharded on dim 0). vlrl calls ``fully_shard`` itself instead of ``accelerator.prepare``:

- on a CPU-only machine accelerate reports no distributed type and would not wrap the model at all;
- the update weights each micro-batch's loss by its share of the *global* minibatch, so the gradients
  must be summed over processes, not averaged (``set_gradient_divide_factor(1.0)``);
- one process may hold image rows and another none: the vision tower stays in the root unit (gathered
  once per forward, whatever a process's rows), and unused parameters reduce as zeros;
- losses call ``response_logprobs``, not ``forward``: it is registered as an FSDP forward method.

Units: each decoder layer of the LLM (its ``_no_split_modules``) and the root (vision tower, projector,
embeddings, head). Every process must run the same number of forwards (each one all-gathers): the
update pads a process's micro-batches with zero-weight ones (``vlrl.algos.update``).

Generation needs whole parameters and runs a different number of decode steps per process, so
rollouts, held-out evaluation and saving use a plain module of full weights (:class:`Policy.full`),
all-gathered from the shards when the update changed them and freed again before the next update.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

STRATEGIES = ("auto", "none", "fsdp")


def launcher_strategy(requested: str, stage: str) -> str:
    """The sharding a stage runs with: ``requested`` ("none", "fsdp", or "auto": FSDP when the
    launcher's config asks for it, i.e. accelerate's ``ACCELERATE_USE_FSDP``). A DeepSpeed launch is
    an error: the RL and DPO updates sum gradients over processes with uneven row counts, which
    DeepSpeed's engine does not let them do."""
    from accelerate.utils import parse_flag_from_env

    from vlrl.distributed import world

    if requested not in STRATEGIES:
        raise ValueError(f"{stage}: sharding must be one of {', '.join(STRATEGIES)}, got '{requested}'")
    if parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):
        raise ValueError(f"{stage} does not run under DeepSpeed (its update weights each process's loss by its "
                         f"share of the global minibatch); launch it with configs/accelerate/fsdp.yaml (sharded) "
                         f"or ddp.yaml")
    if requested == "auto":
        requested = "fsdp" if parse_flag_from_env("ACCELERATE_USE_FSDP") else "none"
    return requested if world()[1] > 1 else "none"  # one process: nothing to shard over


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The LLM's decoder layers (the classes transformers names in ``_no_split_modules``)."""
    names = set(getattr(model.llm, "_no_split_modules", None) or [])
    units = [m for m in model.llm.modules() if type(m).__name__ in names]
    if not units:
        raise ValueError(f"sharding: found no decoder layers in {type(model.llm).__name__} (its _no_split_modules "
                         f"is {sorted(names) or 'empty'})")
    return units


def shard(model: nn.Module, reshard_after_forward: bool = True) -> nn.Module:
    """Shard ``model`` (a VisionLanguageModel, weights already loaded) over every process, in place;
    returns it. Gradients are summed over processes (the update's loss weights make the sum the global
    mean)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    from vlrl.distributed import world

    device = "cuda" if model.device.type == "cuda" else "cpu"
    mesh = init_device_mesh(device, (world()[1],))
    # bf16: the engine all-gathers bf16 copies of the fp32 shards for the forward and reduces gradients
    # in fp32 (the shards, their gradients and Adam's moments stay fp32); the model's own autocast
    # keeps softmax and norms in fp32, as in the full-weight copy that samples
    bf16 = getattr(model, "precision", "fp32") == "bf16"
    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16
          else MixedPrecisionPolicy())
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    register_fsdp_forward_method(model, "response_logprobs")
    for unit in model.modules():  # each FSDP unit keeps its own reduction settings
        if isinstance(unit, FSDPModule):
            unit.set_gradient_divide_factor(1.0)
            unit.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no PREMUL_SUM
            unit.set_reduce_scatter_unused_params(True)
    return model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of a sharded ``model`` as whole tensors, on every process (collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state of ``model`` (sharded or not) with whole tensors keyed by parameter name, on
    the CPU: loadable on any number of processes by :func:`load_optimizer_state`. Collective when
    sharded (then only the main process gets the tensors)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a state written by :func:`full_optimizer_state` (or an older checkpoint's positional
    ``opt.state_dict()``) into ``opt``; collective when ``model`` is sharded."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if all(isinstance(k, int) for k in state["state"]):  # positional: written by opt.state_dict()
        opt.load_state_dict(state)
    elif is_sharded(model):
        set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))
    else:  # by name, onto a plain module (DCP's loader wants a process group to broadcast from)
        opt.load_state_dict(_positional(model, opt, state))


def _positional(model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """A name-keyed optimizer state as ``opt.load_state_dict`` takes it (parameters by position)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, Any] = {"state": {}, "param_groups": []}
    i = 0
    for group, saved in zip(opt.param_groups, state["param_groups"]):
        for p in group["params"]:
            if names[id(p)] in state["state"]:
                out["state"][i] = state["state"][names[id(p)]]
            i += 1
        out["param_groups"].append({**saved, "params": list(range(i - len(group["params"]), i))})
    return out


class Policy:
    """The trained policy, sharded or not. ``train`` is the module the update steps; ``full()`` a module
    with whole weights for rollouts, evaluation and saving: ``train`` itself when not sharded, else a
    plain copy refreshed from the shards after each update (``updated()``) and freed during it.

    Under sharding ``full()`` and ``updated()`` are collective: call them at the same points on every
    process."""

    def __init__(self, model: nn.Module, strategy: str = "none", reshard_after_forward: bool = True) -> None:
        self.strategy = strategy
        self._copy: nn.Module | None = None
        self._fresh = True
        if strategy == "fsdp":
            self._copy = _empty_copy(model)  # the same modules (LoRA, hooks), weights filled by full()
            self._fresh = False
            model = shard(model, reshard_after_forward)
        self.train = model

    @property
    def sharded(self) -> bool:
        return self._copy is not None

    def full(self) -> nn.Module:
        """Whole weights as of the last update (all-gathered once per update)."""
        if self._copy is None:
            return self.train
        if not self._fresh:
            state = full_state_dict(self.train)
            for name, t in [*self._copy.named_parameters(), *self._copy.named_buffers()]:
                if name in state:  # popped: each gathered tensor's buffer goes as soon as it is copied
                    v = state.pop(name).detach().to(t.device)
                    if v.untyped_storage().nbytes() != v.numel() * v.element_size():
                        v = v.clone()  # a view into FSDP's padded all-gather buffer: own storage to save it
                    t.data = v
            self._fresh = True
        return self._copy

    def updated(self) -> None:
        """The update changed the shards: free the copy (the next ``full()`` gathers it again)."""
        if self._copy is not None:
            _free(self._copy)
            self._fresh = False


def _empty_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters are empty (never a second copy of the weights in memory:
    each parameter is pre-seeded in deepcopy's memo; tied parameters stay tied)."""
    memo = {id(p): nn.Parameter(torch.empty(0, dtype=p.dtype, device=p.device), requires_grad=p.requires_grad)
            for p in model.parameters()}
    return copy.deepcopy(model, memo)


def _free(module: nn.Module) -> None:
    """Release a module's parameter storage (shapes are refilled by ``Policy.full``)."""
    for p in module.parameters():
        p.data = torch.empty(0, dtype=p.dtype, device=p.device)
