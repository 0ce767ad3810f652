"""Worker-side hooks that keep DCMDP's λ in step with verl's training step.

`install()` wraps three methods of verl 0.9.1's `ActorRolloutRefWorker` (one Ray actor per GPU;
`functools.wraps` keeps verl's dispatch registration on the wrapper):

- `update_actor(data)` — called once per training step with this rank's shard of the step's
  batch: `begin_step` (δ̄ all-reduced over the data-parallel ranks, so every rank has the same δ̄,
  gate and λ), verl's update, then `end_step` (the dual update); the step's `dc/*` metrics are
  added to the returned metrics when verl returns a dict-like output with `metrics`.
- `save_checkpoint(local_path, …)` / `load_checkpoint(local_path, …)` — λ is written to / read from
  `<local_path>/harness_dual_state.json` (rank 0 writes; every rank reads), so a resumed run
  continues with the λ the checkpointed step produced.

Only `harness_dcmdp` runs use them (`HARNESS_VERL_PLUGIN` names the algorithm); other runs pass
straight through. Not exercised here against a live verl trainer (no GPU): see README.
"""
import functools

import torch

from . import losses

_INSTALLED = False


def _is_dcmdp():
    return losses.settings().get("name") == "dcmdp"


def _flat(t):
    return t.values() if getattr(t, "is_nested", False) else t


def step_sums(data):
    """(old_log_prob, log μ, mask) of this rank's shard, flattened when verl sends jagged tensors."""
    old = _flat(data["old_log_probs"])
    if "rollout_log_probs" in data.keys():
        mu = _flat(data["rollout_log_probs"])
    else:
        mu = losses.rollout_log_prob_from_weights(old, _flat(data["rollout_is_weights"]))
    mask = _flat(data["response_mask"]) if "response_mask" in data.keys() else torch.ones_like(old)
    return old, mu, mask


def _rank0():
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def wrap_update(update):
    @functools.wraps(update)
    def update_actor(self, data, *args, **kwargs):
        if not _is_dcmdp():
            return update(self, data, *args, **kwargs)
        state = losses.dual_state()
        state.begin_step(*step_sums(data))
        out = update(self, data, *args, **kwargs)
        metrics = state.end_step()
        if out is not None and "metrics" in getattr(out, "keys", lambda: [])():
            try:
                out["metrics"].update(metrics)
            except Exception:  # pragma: no cover - verl's metrics container changed
                pass
        return out

    return update_actor


def wrap_save(save):
    @functools.wraps(save)
    def save_checkpoint(self, local_path, *args, **kwargs):
        out = save(self, local_path, *args, **kwargs)
        if _is_dcmdp() and _rank0():
            losses.dual_state().save(local_path)
        return out

    return save_checkpoint


def wrap_load(load):
    @functools.wraps(load)
    def load_checkpoint(self, local_path, *args, **kwargs):
        out = load(self, local_path, *args, **kwargs)
        if _is_dcmdp() and local_path is not None:
            losses.dual_state().load(local_path)
        return out

    return load_checkpoint


def install():
    global _INSTALLED
    if _INSTALLED:
        return
    from verl.workers.engine_workers import ActorRolloutRefWorker as W

    W.update_actor = wrap_update(W.update_actor)
    W.save_checkpoint = wrap_save(W.save_checkpoint)
    W.load_checkpoint = wrap_load(W.load_checkpoint)
    _INSTALLED = True
