"""DCMDP's Lagrange multiplier λ, kept in step with verl's training step.

One `DualState` per actor process. Per training step:

1. `begin_step(old_log_prob, rollout_log_prob, mask)` before the step's first update: the step's
   discrepancy δ̄ = mean over response tokens of |π_old − μ|. Each data-parallel rank holds a shard
   of the batch, so the (sum, count) pair is all-reduced over `torch.distributed`'s default group
   when it is initialised: every rank gets the same δ̄ (the whole batch's, as the harness computes
   it) and therefore the same gate and the same λ.
2. The loss uses `lambda_` and `gate_open()` for every micro-batch of the step.
3. `end_step()` after the step's last update: λ ← clip(λ + η·(δ̄ − c), 0, λ_max), the
   harness's `objective::dcmdp::dual_update`, in float64 (a Python float).

`state_dict()` / `load_state_dict()` carry λ exactly (its IEEE bits, as the harness's checkpoint
does) and the number of completed steps; `save(dir)` / `load(dir)` write them next to verl's actor
checkpoint (`harness_dual_state.json`).
"""
import json
import os
import struct

import torch

STATE_FILE = "harness_dual_state.json"


def _bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def _from_bits(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b))[0]


def dual_update(lam: float, delta_bar: float, c: float, eta: float, lambda_max: float) -> float:
    """`clip(λ + η·(δ̄ − c), 0, λ_max)`."""
    return min(max(lam + eta * (delta_bar - c), 0.0), lambda_max)


class DualState:
    def __init__(self, c=0.0037, lambda_0=0.1, eta_lambda=1.0, lambda_max=10.0, gating=True):
        if not (0.0 <= lambda_0 <= lambda_max):
            raise ValueError(f"lambda_0 {lambda_0} outside [0, lambda_max = {lambda_max}]")
        self.c, self.eta, self.lambda_max, self.gating = float(c), float(eta_lambda), float(lambda_max), gating
        self.lambda_ = float(lambda_0)
        self.delta_bar = None  # this step's δ̄, between begin_step and end_step
        self.steps = 0

    @staticmethod
    def local_sums(old_log_prob, rollout_log_prob, mask):
        """(Σ|π_old − μ|, token count) over this rank's response tokens, float64."""
        m = mask.to(torch.float64)
        valid = m > 0
        zero = torch.zeros((), dtype=torch.float64, device=old_log_prob.device)
        a = torch.where(valid, old_log_prob.detach().to(torch.float64), zero).exp()
        b = torch.where(valid, rollout_log_prob.detach().to(torch.float64), zero).exp()
        return torch.stack([((a - b).abs() * m).sum(), m.sum()])

    def begin_step(self, old_log_prob, rollout_log_prob, mask):
        sums = self.local_sums(old_log_prob, rollout_log_prob, mask)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        total, count = sums.tolist()
        self.delta_bar = total / count if count > 0 else 0.0
        return self.delta_bar

    def gate_open(self, delta_bar=None):
        d = self.delta_bar if delta_bar is None else delta_bar
        return (not self.gating) or (d is not None and d > self.c)

    def end_step(self):
        """The dual update; returns the step's `dc/*` metrics (the harness's names)."""
        if self.delta_bar is None:
            raise RuntimeError("DualState.end_step without begin_step")
        used, d = self.lambda_, self.delta_bar
        gate = self.gate_open()
        self.lambda_ = dual_update(used, d, self.c, self.eta, self.lambda_max)
        self.delta_bar = None
        self.steps += 1
        return {"dc/lambda": used, "dc/lambda_next": self.lambda_, "dc/delta_bar": d,
                "dc/violation": d - self.c, "dc/gate": 1.0 if gate else 0.0}

    def state_dict(self):
        return {"lambda": self.lambda_, "lambda_bits": _bits(self.lambda_), "steps": self.steps}

    def load_state_dict(self, state):
        lam = _from_bits(state["lambda_bits"]) if "lambda_bits" in state else float(state["lambda"])
        if not (0.0 <= lam <= self.lambda_max):
            raise ValueError(f"dual state: lambda {lam} outside [0, lambda_max = {self.lambda_max}]")
        self.lambda_, self.steps, self.delta_bar = lam, int(state.get("steps", 0)), None

    def save(self, directory):
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, STATE_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(self.state_dict(), f)
        os.replace(tmp, os.path.join(directory, STATE_FILE))

    def load(self, directory):
        """Restore from `directory`; False (and λ_0 kept) when it holds no state."""
        path = os.path.join(directory, STATE_FILE)
        if not os.path.exists(path):
            return False
        with open(path) as f:
            self.load_state_dict(json.load(f))
        return True
