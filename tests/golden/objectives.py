#!/usr/bin/env python3
"""Golden values for harness/src/objective: loss, gradient and key metrics of every objective on one
small hand-built batch, written straight from the formulas in docs/algorithms.md with hand-derived
backward passes (NumPy, f64). Independent of the Rust code; the smooth cases are cross-checked here
against central finite differences before anything is written.

    python3 tests/golden/objectives.py > tests/golden/objectives.json

Conventions shared with the Rust side (documented in docs/algorithms.md; verl 0.9.1's definitions):
  * loss = sum_t g_t * l_t, with g the aggregation coefficients of `loss_agg_mode` (see `agg_coef`):
    token-mean divides by the tokens left after rejections, the seq-mean modes by the sequences
    that have a response token (a rejected sequence still counts);
  * rejections (MIS, Seq-MIS, Geo-RS) remove tokens or sequences from the loss mask; IS weights
    (TIS, Seq-TIS, Seq-MIS, IcePop) multiply the per-token loss, IcePop's zeros stay in the mask;
  * log-ratios are clamped to [-20, 20] before exp (never active on this batch);
  * DPPO's loss value is the documented surrogate  -A * sg(min(r~, C)) * M * log pi.
"""
import json
import math

import numpy as np

B, T, K = 4, 5, 3
# 1 on response tokens; rows 1-3 are right-padded.
MASK = np.array(
    [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=np.float64
)
VALID = MASK > 0
# pi_old (trainer, weights that generated the batch); padded entries are garbage on purpose.
P_OLD = np.array(
    [
        [0.60, 0.30, 0.85, 0.10, 0.45],
        [0.20, 0.70, 0.05, 0.50, 0.50],
        [0.90, 0.15, 0.40, 0.55, 0.90],
        [0.35, 0.08, 0.30, 0.30, 0.30],
    ]
)
# mu (rollout engine): rho = pi_old / mu spans every correction's thresholds.
P_MU = np.array(
    [
        [0.58, 0.33, 0.84, 0.04, 0.47],
        [0.22, 0.69, 0.12, 0.50, 0.50],
        [0.91, 0.14, 0.41, 0.50, 0.50],
        [0.33, 0.009, 0.30, 0.30, 0.30],
    ]
)
# r = pi_theta / pi_old: clip-high, clip-low, dual-clip and unclipped tokens in both advantage signs.
RATIO = np.array(
    [
        [1.10, 1.35, 1.05, 0.70, 0.95],
        [0.75, 1.10, 3.50, 1.00, 1.00],
        [1.02, 0.90, 1.50, 1.22, 1.00],
        [0.45, 1.30, 1.00, 1.00, 1.00],
    ]
)
P_REF = P_OLD * np.array(
    [
        [0.95, 1.10, 1.02, 0.80, 1.05],
        [1.20, 0.97, 0.60, 1.00, 1.00],
        [1.01, 1.30, 0.90, 1.05, 1.00],
        [0.85, 1.25, 1.00, 1.00, 1.00],
    ]
)
ADV = np.array([1.2, -0.8, 0.5, -1.5])[:, None] * np.ones((B, T))

LOGP = np.log(P_OLD * RATIO)
OLD = np.log(P_OLD)
MU = np.log(P_MU)
REF = np.log(P_REF)
# Garbage in padded positions must not leak into losses or gradients.
LOGP[~VALID] = 0.0
MU[~VALID] = -30.0
ADV_IN = np.where(VALID, ADV, 9.0)

# Rollout top-K (mu) and the current policy at the same ids.
MU_TOPK = np.array(
    [
        [[0.58, 0.20, 0.10], [0.33, 0.30, 0.20], [0.84, 0.05, 0.04], [0.40, 0.30, 0.04], [0.47, 0.30, 0.10]],
        [[0.40, 0.22, 0.20], [0.69, 0.10, 0.05], [0.50, 0.20, 0.12], [0.3, 0.3, 0.3], [0.3, 0.3, 0.3]],
        [[0.91, 0.03, 0.02], [0.50, 0.14, 0.10], [0.41, 0.30, 0.10], [0.50, 0.30, 0.05], [0.3, 0.3, 0.3]],
        [[0.33, 0.30, 0.10], [0.60, 0.20, 0.009], [0.3, 0.3, 0.3], [0.3, 0.3, 0.3], [0.3, 0.3, 0.3]],
    ]
)
PI_TOPK = MU_TOPK * np.array(
    [
        [[1.14, 0.90, 1.00], [1.23, 0.80, 0.90], [1.06, 0.90, 0.80], [0.70, 1.45, 1.75], [0.91, 1.05, 1.00]],
        [[0.90, 0.68, 1.10], [1.12, 0.80, 1.00], [0.75, 1.20, 1.46], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
        [[1.01, 1.00, 1.00], [0.60, 0.96, 1.60], [1.46, 0.50, 1.00], [1.32, 0.70, 1.00], [1.0, 1.0, 1.0]],
        [[0.48, 1.50, 1.00], [0.80, 1.20, 11.6], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
    ]
)
TOPK_LOGP = np.log(PI_TOPK)
MU_TOPK_LOGP = np.log(MU_TOPK)

# PPO value model.
OLD_VALUES = np.array(
    [
        [0.10, 0.20, 0.30, 0.40, 0.50],
        [-0.30, -0.10, 0.20, 0.0, 0.0],
        [0.50, 0.40, 0.60, 0.70, 0.0],
        [0.00, -0.20, 0.0, 0.0, 0.0],
    ]
)
VALUES = OLD_VALUES + np.array(
    [
        [0.20, -0.70, 0.10, 0.90, -0.05],
        [0.60, 0.05, -0.30, 0.0, 0.0],
        [-0.10, 0.80, 0.20, -0.60, 0.0],
        [0.30, -0.55, 0.0, 0.0, 0.0],
    ]
)
RETURNS = np.array(
    [
        [1.00, 0.90, 0.80, 0.70, 1.00],
        [0.00, 0.20, -0.50, 0.0, 0.0],
        [0.40, 0.10, 1.20, 0.30, 0.0],
        [-1.00, -0.90, 0.0, 0.0, 0.0],
    ]
)
REWARDS = np.array([1.0, 0.0, 0.5, 0.5])

LN_CLAMP = 20.0
EPS_STD = 1e-6


# ---------------------------------------------------------------- aggregation
def agg_coef(kept, mode, norm=None, mask=None):
    """g with loss = sum(g * l) for each loss_agg_mode: `kept` is the loss mask (after rejections),
    `mask` the response mask (its sequences are the seq-mean denominator)."""
    mask = kept if mask is None else mask
    n_seq = kept.sum(axis=1, keepdims=True)
    n_valid = max((mask.sum(axis=1) > 0).sum(), 1)
    if mode == "token-mean":
        return kept / max(kept.sum(), 1.0)
    if mode == "seq-mean-token-mean":
        return kept / np.maximum(n_seq, 1.0) / n_valid
    if mode == "seq-mean-token-sum":
        return kept / n_valid
    if mode == "seq-mean-token-sum-norm":
        return kept / n_valid / (kept.shape[1] if norm is None else norm)
    raise ValueError(mode)


def masked_mean(x, mask):
    return float((x * mask).sum() / max(mask.sum(), 1.0))


# ---------------------------------------------------------------- KL estimators
def kl_terms(logp, ref, est):
    """(value, d value / d logp) per token."""
    lr = np.clip(logp - ref, -LN_CLAMP, LN_CLAMP)
    if est == "k1":
        return lr, np.ones_like(lr)
    if est == "k2":
        return 0.5 * lr**2, lr
    if est == "k3":
        v = np.exp(-lr) - 1.0 + lr
        d = 1.0 - np.exp(-lr)
        inside = (v >= -10) & (v <= 10)
        return np.clip(v, -10, 10), np.where(inside, d, 0.0)
    raise ValueError(est)


# ---------------------------------------------------------------- corrections
def corrections(old, mu, mask, items):
    """(IS weights, loss mask) for a list of corrections; rho = pi_old / mu."""
    log_rho = np.where(mask > 0, old - mu, 0.0)
    w = np.ones_like(old)
    keep = mask.copy()
    n_seq = np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    seq_log = (log_rho * mask).sum(axis=1, keepdims=True)
    k1 = -log_rho  # verl's rejection statistic log(mu / pi_old)
    for it in items:
        kind = it["type"]
        c = it.get("c", 2.0)
        if kind == "tis":
            w = w * np.minimum(np.exp(log_rho), c)
        elif kind == "mis":
            upper = math.inf if it.get("one_sided") else math.log(c)
            keep = keep * ((k1 >= -math.log(c)) & (k1 <= upper))
        elif kind == "seq-tis":
            w = w * np.minimum(np.exp(seq_log), c)
        elif kind == "seq-mis":
            s = (k1 * mask).sum(axis=1, keepdims=True)
            keep = keep * ((s >= -math.log(c)) & (s <= math.log(c)))
            if it.get("weight", True):
                w = w * np.minimum(np.exp(seq_log), c)
        elif kind == "geo-rs":
            upper = it["upper"]
            lower = it.get("lower") or 1.0 / upper
            g = (k1 * mask).sum(axis=1, keepdims=True) / n_seq
            keep = keep * ((g >= math.log(lower)) & (g <= math.log(upper)))
        elif kind == "icepop":
            rho = np.exp(log_rho)
            w = w * np.where((rho >= it["low"]) & (rho <= it["high"]), rho, 0.0)
        else:
            raise ValueError(kind)
    return w * mask, keep


# ---------------------------------------------------------------- PPO-clip / GRPO
def clip_terms(logp, old, adv, lo, hi, dual):
    """Per-token loss, d loss / d logp, clipped flag, dual-clip flag."""
    r = np.exp(np.clip(logp - old, -LN_CLAMP, LN_CLAMP))
    l1 = -adv * r
    rc = np.clip(r, 1 - lo, 1 + hi)
    l2 = -adv * rc
    d1 = -adv * r
    d2 = np.where((r >= 1 - lo) & (r <= 1 + hi), -adv * r, 0.0)
    lc = np.maximum(l1, l2)
    dc = np.where(l1 > l2, d1, np.where(l2 > l1, d2, 0.5 * (d1 + d2)))
    clipped = l2 > l1
    if dual is None:
        return lc, dc, clipped, np.zeros_like(clipped)
    l3 = -dual * adv
    lmin = np.minimum(lc, l3)
    dmin = np.where(lc < l3, dc, np.where(l3 < lc, 0.0, 0.5 * dc))
    neg = adv < 0
    return np.where(neg, lmin, lc), np.where(neg, dmin, dc), clipped, neg & (lc > l3)


def pg_case(cfg, adv=ADV, logp=LOGP):
    """GRPO/PPO policy part: corrections, clip loss, optional KL to the reference."""
    lo = cfg.get("clip_ratio_low", 0.2)
    hi = cfg.get("clip_ratio_high", 0.2)
    dual = cfg.get("clip_ratio_c", 3.0)
    mode = cfg.get("loss_agg_mode", "token-mean")
    norm = cfg.get("loss_agg_norm")
    w, keep = corrections(OLD, MU, MASK, cfg.get("corrections", []))
    l, d, clipped, dualf = clip_terms(logp, OLD, adv, lo, hi, dual)
    g = agg_coef(keep, mode, norm, MASK)
    pg = float((g * w * l).sum())
    grad = g * w * d
    metrics = {
        "actor/pg_loss": pg,
        "actor/pg_clipfrac": masked_mean(clipped, keep),
        "actor/pg_clipfrac_lower": masked_mean(dualf, keep),
        "actor/ppo_kl": masked_mean(OLD - logp, keep),
    }
    loss = pg
    if cfg.get("kl") is not None:
        kv, kd = kl_terms(logp, REF, cfg["kl"]["estimator"])
        kl = float((g * kv).sum())
        loss += cfg["kl"]["coef"] * kl
        grad = grad + cfg["kl"]["coef"] * g * kd
        metrics["actor/kl_loss"] = kl
    return loss, grad, metrics


# ---------------------------------------------------------------- PPO value loss
def value_terms(values, old_values, returns, eps):
    vc = old_values + np.clip(values - old_values, -eps, eps)
    a = (values - returns) ** 2
    b = (vc - returns) ** 2
    da = 2 * (values - returns)
    db = np.where(np.abs(values - old_values) <= eps, 2 * (vc - returns), 0.0)
    v = 0.5 * np.maximum(a, b)
    d = 0.5 * np.where(a > b, da, np.where(b > a, db, 0.5 * (da + db)))
    return v, d, b > a


def ppo_case(cfg):
    loss, grad, metrics = pg_case(cfg)
    eps = cfg.get("cliprange_value", 0.5)
    coef = cfg.get("vf_coef", 1.0)
    _, keep = corrections(OLD, MU, MASK, cfg.get("corrections", []))
    g = agg_coef(keep, cfg.get("loss_agg_mode", "token-mean"), cfg.get("loss_agg_norm"), MASK)
    v, dv, clipped = value_terms(VALUES, OLD_VALUES, RETURNS, eps)
    vf = float((g * v).sum())
    metrics["critic/vf_loss"] = vf
    metrics["critic/vf_clipfrac"] = masked_mean(clipped, keep)
    return loss + coef * vf, grad, metrics, coef * g * dv


# ---------------------------------------------------------------- DPPO
def bern_kl(mu, pi, eps=1e-8):
    return mu * np.log(mu / pi) + (1 - mu) * np.log((1 - mu + eps) / (1 - pi + eps))


def dppo_case(cfg):
    div = cfg.get("divergence", "binary-tv")
    delta = cfg.get("delta") or (0.15 if div.endswith("tv") else 0.05)
    low, high = cfg.get("delta_low", delta), cfg.get("delta_high", delta)
    cap = cfg.get("is_cap", 10.0)
    mode = cfg.get("loss_agg_mode", "seq-mean-token-sum-norm")
    pi, mu = np.exp(LOGP), np.exp(MU)
    d = pi - mu
    if div == "binary-tv":
        dist = np.abs(d)
    elif div == "binary-kl":
        dist = bern_kl(mu, pi)
    else:
        pk, mk = np.exp(TOPK_LOGP), np.exp(MU_TOPK_LOGP)
        prest = np.clip(1 - pk.sum(-1), 1e-12, None)
        mrest = np.clip(1 - mk.sum(-1), 1e-12, None)
        if div == "topk-tv":
            dist = 0.5 * (np.abs(pk - mk).sum(-1) + np.abs(prest - mrest))
        else:
            dist = (mk * np.log(mk / pk)).sum(-1) + mrest * np.log(mrest / prest)
    # A > 0: moved up beyond delta_high; otherwise moved down beyond delta_low.
    masked = VALID & np.where(ADV > 0, (d > 0) & (dist > high), (d < 0) & (dist > low))
    m = MASK * (~masked)
    w = np.minimum(np.exp(np.minimum(LOGP - MU, LN_CLAMP)), cap)
    g = agg_coef(MASK, mode, cfg.get("loss_agg_norm"))
    loss = float((g * (-ADV * w * m * LOGP)).sum())
    grad = g * (-ADV * w * m)
    dv = dist[VALID]
    metrics = {
        "dppo/mask_frac": float(masked.sum() / MASK.sum()),
        "dppo/div_mean": float(dv.mean()),
        "dppo/div_max": float(dv.max()),
    }
    return loss, grad, metrics


# ---------------------------------------------------------------- DRPO
def drpo_case(cfg, logp=LOGP):
    delta = cfg.get("delta", 12.5)
    mode = cfg.get("loss_agg_mode", "seq-mean-token-sum-norm")
    pi, mu = np.exp(logp), np.exp(MU)
    rt = np.exp(logp - MU)
    obj = rt * ADV - np.abs(ADV) * (pi - mu) ** 2 / (2 * delta * mu)
    dobj = pi * (ADV / mu - np.abs(ADV) * (pi - mu) / (delta * mu))
    g = agg_coef(MASK, mode, cfg.get("loss_agg_norm"))
    beyond = VALID & ((pi - mu) * np.sign(ADV) > delta)
    return float(-(g * obj).sum()), -g * dobj, {"drpo/beyond_frac": float(beyond.sum() / MASK.sum())}


# ---------------------------------------------------------------- DCMDP (DC-GRPO)
def dcmdp_case(cfg, lam, delta_bar, logp=LOGP):
    c = cfg.get("c", 0.0037)
    gate = delta_bar > c or not cfg.get("gating", True)
    form = cfg.get("form", "loss")
    mode = cfg.get("loss_agg_mode", "token-mean")
    if form == "advantage" and gate:
        delta_t = np.abs(np.exp(OLD) - np.exp(MU))
        adv = ADV - lam * delta_t
        loss, grad, metrics = pg_case(cfg, adv=adv, logp=logp)
        metrics["dc/penalty"] = lam * masked_mean(delta_t, MASK)
        return loss, grad, metrics
    loss, grad, metrics = pg_case(cfg, logp=logp)
    if form == "loss" and gate:
        pi, mu = np.exp(logp), np.exp(MU)
        g = agg_coef(MASK, mode, cfg.get("loss_agg_norm"))
        pen = float((g * np.abs(pi - mu)).sum())
        loss += lam * pen
        grad = grad + lam * g * np.sign(pi - mu) * pi
        metrics["dc/penalty"] = lam * pen
    else:
        metrics["dc/penalty"] = 0.0
    return loss, grad, metrics


# ---------------------------------------------------------------- advantages
def group_adv(rewards, group, by_std):
    r = rewards.reshape(-1, group)
    if group == 1:
        mean, std = np.zeros_like(r), np.ones_like(r)
    else:
        mean = r.mean(1, keepdims=True)
        std = r.std(1, ddof=1, keepdims=True)
    a = (r - mean) / (std + EPS_STD) if by_std else r - mean
    return a.reshape(-1, 1) * MASK


def gae_adv(rewards, values, gamma, lam, whiten):
    tok = np.zeros((B, T))
    last = [int(np.nonzero(MASK[i])[0].max()) for i in range(B)]
    for i in range(B):
        tok[i, last[i]] = rewards[i]
    v = values * MASK
    adv = np.zeros((B, T))
    for i in range(B):
        gae = 0.0
        for t in reversed(range(last[i] + 1)):
            nv = v[i, t + 1] if t + 1 <= last[i] else 0.0
            delta = tok[i, t] + gamma * nv - v[i, t]
            gae = delta + gamma * lam * gae
            adv[i, t] = gae
    ret = (adv + v) * MASK
    if whiten:
        x = adv[VALID]
        mean = x.mean()
        var = ((x - mean) ** 2).sum() / (x.size - 1)
        adv = (adv - mean) / math.sqrt(var + 1e-8)
    return adv * MASK, ret


# ---------------------------------------------------------------- finite-difference self-check
def fd_check(name, f, x, grad, only=None, h=1e-6):
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        if only is not None and not only[idx]:
            continue
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (f(xp) - f(xm)) / (2 * h)
    err = np.abs(num - grad).max()
    assert err < 1e-7, f"{name}: analytic gradient off by {err}"


def main():
    cases = []

    def add(name, cfg, loss, grad, metrics, state=None, delta_bar=None, grad_values=None):
        assert np.all(grad[~VALID] == 0), name
        c = {"name": name, "config": cfg, "loss": loss, "grad_logp": grad.ravel().tolist(), "metrics": metrics}
        if state is not None:
            c["state"] = state
        if delta_bar is not None:
            c["delta_bar"] = delta_bar
        if grad_values is not None:
            c["grad_values"] = grad_values.ravel().tolist()
        cases.append(c)

    clip = {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 3.0}
    for mode in ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]:
        cfg = {"name": "grpo", **clip, "loss_agg_mode": mode}
        add(f"grpo/{mode}", cfg, *pg_case(cfg))
    cfg = {"name": "grpo", **clip, "loss_agg_mode": "seq-mean-token-sum-norm", "loss_agg_norm": 8.0}
    add("grpo/seq-mean-token-sum-norm/8", cfg, *pg_case(cfg))
    cfg = {"name": "grpo", "clip_ratio_c": None}
    add("grpo/defaults-no-dual-clip", cfg, *pg_case(cfg))
    for est in ["k1", "k2", "k3"]:
        cfg = {"name": "grpo", **clip, "kl": {"coef": 0.1, "estimator": est}}
        add(f"grpo/kl-{est}", cfg, *pg_case(cfg))
    corr_sets = {
        "tis": [{"type": "tis", "c": 2.0}],
        "mis": [{"type": "mis", "c": 2.0}],
        "mis-one-sided": [{"type": "mis", "c": 1.5, "one_sided": True}],
        "seq-tis": [{"type": "seq-tis", "c": 2.0}],
        "seq-mis": [{"type": "seq-mis", "c": 2.0}],
        "seq-mis-reject-only": [{"type": "seq-mis", "c": 1.5, "weight": False}],
        "geo-rs": [{"type": "geo-rs", "lower": 0.8, "upper": 1.25}],
        "icepop": [{"type": "icepop", "low": 0.5, "high": 5.0}],
        "tis+icepop": [{"type": "tis", "c": 2.0}, {"type": "icepop", "low": 0.5, "high": 5.0}],
    }
    for key, items in corr_sets.items():
        for mode in ["token-mean", "seq-mean-token-mean"]:
            cfg = {"name": "grpo", **clip, "loss_agg_mode": mode, "corrections": items}
            add(f"grpo/{key}/{mode}", cfg, *pg_case(cfg))
    cfg = {"name": "ppo", **clip, "cliprange_value": 0.5, "vf_coef": 0.5,
           "corrections": [{"type": "tis", "c": 2.0}]}
    loss, grad, metrics, gv = ppo_case(cfg)
    add("ppo/tis", cfg, loss, grad, metrics, grad_values=gv)
    cfg = {"name": "ppo", "loss_agg_mode": "seq-mean-token-mean"}
    loss, grad, metrics, gv = ppo_case(cfg)
    add("ppo/seq-mean-token-mean", cfg, loss, grad, metrics, grad_values=gv)
    for div in ["binary-tv", "binary-kl", "topk-tv", "topk-kl"]:
        cfg = {"name": "dppo", "divergence": div}
        add(f"dppo/{div}", cfg, *dppo_case(cfg))
    for div, delta in [("binary-kl", 0.065), ("topk-kl", 0.06)]:
        cfg = {"name": "dppo", "divergence": div, "delta": delta}
        add(f"dppo/{div}/delta{delta}", cfg, *dppo_case(cfg))
    cfg = {"name": "dppo", "divergence": "binary-tv", "delta_low": 0.02, "delta_high": 0.2}
    add("dppo/binary-tv/asymmetric", cfg, *dppo_case(cfg))
    cfg = {"name": "dppo", "divergence": "binary-tv", "delta": 0.1, "is_cap": 5.0, "loss_agg_mode": "token-mean"}
    add("dppo/binary-tv/delta0.1", cfg, *dppo_case(cfg))
    cfg = {"name": "drpo"}
    add("drpo/default", cfg, *drpo_case(cfg))
    cfg = {"name": "drpo", "delta": 0.08, "loss_agg_mode": "token-mean"}
    add("drpo/delta0.08", cfg, *drpo_case(cfg))
    lam = 0.3
    for form in ["loss", "advantage"]:
        for gating, dbar in [(True, 0.01), (True, 0.002), (False, 0.002)]:
            cfg = {"name": "dcmdp", **clip, "c": 0.0037, "gating": gating, "form": form}
            add(f"dcmdp/{form}/gating={gating}/delta_bar={dbar}", cfg, *dcmdp_case(cfg, lam, dbar),
                state={"lambda": lam}, delta_bar=dbar)
    cfg = {"name": "dcmdp", "c": 0.0037, "form": "loss", "loss_agg_mode": "seq-mean-token-sum"}
    add("dcmdp/loss/seq-mean-token-sum", cfg, *dcmdp_case(cfg, lam, 0.01), state={"lambda": lam}, delta_bar=0.01)

    # Self-check the hand-derived gradients where the loss is a smooth function of logp alone.
    for c in cases:
        name, cfg = c["name"], c["config"]
        grad = np.array(c["grad_logp"]).reshape(B, T)
        if cfg["name"] in ("grpo", "ppo"):
            f = lambda x, cfg=cfg: pg_case(cfg, logp=x)[0]
        elif cfg["name"] == "drpo":
            f = lambda x, cfg=cfg: drpo_case(cfg, logp=x)[0]
        elif cfg["name"] == "dcmdp":
            f = lambda x, c=c: dcmdp_case(c["config"], c["state"]["lambda"], c["delta_bar"], logp=x)[0]
        else:
            continue
        fd_check(name, f, LOGP.copy(), grad, only=VALID)
    fd_check("ppo/values", lambda v: float((agg_coef(MASK, "token-mean") * value_terms(v, OLD_VALUES, RETURNS, 0.5)[0]).sum()),
             VALUES.copy(), agg_coef(MASK, "token-mean") * value_terms(VALUES, OLD_VALUES, RETURNS, 0.5)[1], only=VALID)


    advantages = []
    for g in [1, 2, 4]:
        for by_std in [True, False]:
            cfg = {"name": "grpo", "norm_adv_by_std": by_std}
            advantages.append({"name": f"grpo/G={g}/std={by_std}", "config": cfg, "group_size": g,
                               "advantages": group_adv(REWARDS, g, by_std).ravel().tolist()})
    for gamma, lam_, whiten in [(1.0, 0.95, True), (1.0, 0.95, False), (0.9, 0.8, False)]:
        cfg = {"name": "ppo", "gamma": gamma, "lam": lam_, "whiten_advantages": whiten}
        a, r = gae_adv(REWARDS, OLD_VALUES, gamma, lam_, whiten)
        advantages.append({"name": f"ppo/gamma={gamma}/lam={lam_}/whiten={whiten}", "config": cfg,
                           "group_size": 2, "advantages": a.ravel().tolist(), "returns": r.ravel().tolist()})

    # Dual update: lambda <- clip(lambda + eta (delta_bar - c), 0, lambda_max).
    dual = []
    lam_v = 0.1
    for dbar in [0.01, 0.02, 0.0, 0.001, 0.5, 0.0037]:
        new = min(max(lam_v + 1.0 * (dbar - 0.0037), 0.0), 0.4)
        dual.append({"delta_bar": dbar, "lambda_before": lam_v, "lambda_after": new})
        lam_v = new

    out = {
        "doc": "generated by tests/golden/objectives.py; do not edit by hand",
        "inputs": {
            "B": B, "T": T, "K": K,
            "mask": MASK.ravel().tolist(),
            "logp": LOGP.ravel().tolist(),
            "old_logp": OLD.ravel().tolist(),
            "rollout_logp": MU.ravel().tolist(),
            "ref_logp": REF.ravel().tolist(),
            "advantages": ADV_IN.ravel().tolist(),
            "topk_logp": TOPK_LOGP.ravel().tolist(),
            "rollout_topk_logp": MU_TOPK_LOGP.ravel().tolist(),
            "values": VALUES.ravel().tolist(),
            "old_values": OLD_VALUES.ravel().tolist(),
            "returns": RETURNS.ravel().tolist(),
            "rewards": REWARDS.tolist(),
        },
        "cases": cases,
        "advantages": advantages,
        "dual_update": {"config": {"name": "dcmdp", "c": 0.0037, "lambda_0": 0.1, "eta_lambda": 1.0,
                                   "lambda_max": 0.4}, "steps": dual},
    }
    print(json.dumps(out, indent=1))


def cases_by(cases, name):
    return next(c for c in cases if c["name"] == name)


if __name__ == "__main__":
    main()
