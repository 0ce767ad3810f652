"""`harness_dcmdp` and `harness_drpo`: the harness's DC-GRPO and DRPO losses
(`harness/src/objective/{dcmdp,drpo}.rs`, `docs/algorithms.md`) as verl 0.9.1 policy losses.

verl calls a policy loss with `(old_log_prob, log_prob, advantages, response_mask,
loss_agg_mode, config, rollout_is_weights)`; `config.global_batch_info` carries the mini-batch's
token and sequence counts, so `agg_loss` divides as the harness's `AggTotals` do and micro-batch
losses add up to the mini-batch's.

What each needs from verl's configuration (the launch generator sets it):

- `harness_dcmdp` needs π_old and μ per token. verl passes μ to a policy loss only through the
  rollout IS weights, so the run uses `algorithm.rollout_correction.rollout_is=token` with
  threshold `IS_THRESHOLD` (1e9: no truncation inside verl's ±20 log-ratio clamp), and the loss
  recovers `log μ = log π_old − log ρ`. The weights are *not* applied to the loss (DC-GRPO has no
  IS weight). Its GRPO part is verl's own `compute_policy_loss_vanilla`.
- `harness_drpo` is anchored to μ: it runs in verl's bypass mode
  (`algorithm.rollout_correction.bypass_mode=true`), where `old_log_prob` is μ.

Differences from the harness: verl logs the returned loss as `actor/pg_loss`, so for
`harness_dcmdp` that key includes the penalty (the harness's excludes it; `dc/penalty` is the
same in both).
"""
import json
import os

import torch
import verl.trainer.ppo.core_algos as ca

from .dual import DualState

SAFETY_BOUND = 20.0
IS_THRESHOLD = 1e9


def settings():
    """The plugin's settings (`HARNESS_VERL_PLUGIN`, JSON); {} when unset."""
    text = os.environ.get("HARNESS_VERL_PLUGIN", "")
    return json.loads(text) if text else {}


_STATE = None


def dual_state():
    """This process's DualState, built from `HARNESS_VERL_PLUGIN` on first use."""
    global _STATE
    if _STATE is None:
        s = settings()
        _STATE = DualState(**{k: s[k] for k in ("c", "lambda_0", "eta_lambda", "lambda_max", "gating") if k in s})
    return _STATE


def set_dual_state(state):
    global _STATE
    _STATE = state


def _zero_pad(x, valid):
    return torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _masked_mean(x, mask, info):
    n = info.get("batch_num_tokens") or mask.sum()
    return float((x * mask).sum() / n * info.get("dp_size", 1))


def rollout_log_prob_from_weights(old_log_prob, rollout_is_weights):
    if rollout_is_weights is None:
        raise ValueError("harness_dcmdp needs μ: set algorithm.rollout_correction.rollout_is=token and "
                         f"rollout_is_threshold={IS_THRESHOLD:g} (the launch generator does)")
    return old_log_prob.detach() - rollout_is_weights.detach().log()


def dcmdp_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
               rollout_log_prob, lambda_, active, form="loss"):
    """DC-GRPO's loss for given λ and gate (the harness's `dcmdp_loss`); (loss, metrics)."""
    mask = response_mask.to(log_prob.dtype)
    valid = mask > 0
    info = config.global_batch_info
    on = active and lambda_ != 0.0
    if on and form == "advantage":
        old = _zero_pad(old_log_prob.detach(), valid).exp()
        mu = _zero_pad(rollout_log_prob.detach(), valid).exp()
        shift = (old - mu).abs() * lambda_
        adv = _zero_pad(advantages.detach(), valid) - shift
        loss, m = ca.compute_policy_loss_vanilla(old_log_prob, log_prob, adv, response_mask,
                                                 loss_agg_mode=loss_agg_mode, config=config)
        penalty = _masked_mean(shift, mask, info)
    else:
        loss, m = ca.compute_policy_loss_vanilla(old_log_prob, log_prob, advantages, response_mask,
                                                 loss_agg_mode=loss_agg_mode, config=config)
        penalty = 0.0
        if on:
            pi = _zero_pad(log_prob, valid).exp()
            mu = _zero_pad(rollout_log_prob.detach(), valid).exp()
            pen = ca.agg_loss((pi - mu).abs(), mask, loss_agg_mode, **info) * lambda_
            penalty = float(pen.detach())
            loss = loss + pen
    m = {k: float(v) for k, v in m.items()}
    m.update({"dc/penalty": penalty, "dc/gate": 1.0 if active else 0.0, "dc/lambda": float(lambda_)})
    return loss, m


@ca.register_policy_loss("harness_dcmdp")
def compute_policy_loss_harness_dcmdp(old_log_prob, log_prob, advantages, response_mask,
                                      loss_agg_mode="token-mean", config=None, rollout_is_weights=None):
    state = dual_state()
    mu = rollout_log_prob_from_weights(old_log_prob, rollout_is_weights)
    if state.delta_bar is None:
        # No step hook ran (e.g. a unit test): the gate uses this micro-batch's δ̄, as the
        # harness does without `begin_step`.
        d = DualState.local_sums(old_log_prob, mu, response_mask)
        active = state.gate_open(float(d[0] / d[1]) if d[1] > 0 else 0.0)
    else:
        active = state.gate_open()
    return dcmdp_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, mu,
                      state.lambda_, active, settings().get("form", "loss"))


def drpo_loss(rollout_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
              delta=12.5, mu_weighted=True):
    """The harness's `drpo_loss`; (loss, metrics)."""
    mask = response_mask.to(log_prob.dtype)
    valid = mask > 0
    info = config.global_batch_info
    logp = _zero_pad(log_prob, valid)
    mu_log = _zero_pad(rollout_log_prob.detach(), valid)
    adv = _zero_pad(advantages.detach(), valid)
    mu = mu_log.exp()
    log_rt = (logp - mu_log).clamp(-SAFETY_BOUND, SAFETY_BOUND)
    rt = log_rt.exp()
    weight = mu if mu_weighted else torch.ones_like(mu)
    reg = adv.abs() * weight * (rt - 1.0).square() / (2.0 * delta)
    per_token = -(rt * adv) + reg
    loss = ca.agg_loss(per_token, mask, loss_agg_mode, **info)
    diff = logp.detach().exp() - mu
    m = {
        "actor/ppo_kl": _masked_mean(-log_rt.detach(), mask, info),
        "drpo/penalty": float(ca.agg_loss(reg.detach(), mask, loss_agg_mode, **info)),
        "drpo/beyond_frac": _masked_mean(((diff * adv.sign()) > delta).to(mask.dtype), mask, info),
        "drpo/tv_mean": _masked_mean(diff.abs(), mask, info),
    }
    return loss, m


@ca.register_policy_loss("harness_drpo")
def compute_policy_loss_harness_drpo(old_log_prob, log_prob, advantages, response_mask,
                                     loss_agg_mode="seq-mean-token-sum-norm", config=None, rollout_is_weights=None):
    # Bypass mode: old_log_prob is the rollout's μ.
    s = settings()
    return drpo_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
                     delta=float(s.get("delta", 12.5)), mu_weighted=bool(s.get("mu_weighted", True)))
