"""The harness's objectives that verl 0.9.1 lacks, as verl policy-loss plugins.

Importing this package registers, through verl's own registry
(`verl.trainer.ppo.core_algos.register_policy_loss`), the loss modes

- `harness_dcmdp`: DC-GRPO / DCMDP (GRPO under a constraint on the mean train–inference
  discrepancy, with a Lagrange multiplier λ; see `dual.py` for λ's update),
- `harness_drpo`: DRPO (divergence-regularised policy optimisation, anchored to the rollout μ).

verl's own `dppo_tv` / `dppo_kl` cover DPPO's binary divergences; DPPO top-K needs the engine's
top-K log-probs inside the policy loss, which verl 0.9.1 does not pass to a policy-loss function,
so it has no plugin here.

Every process that builds a verl actor must import this package: `harness_verl.launch` sets
`VERL_USE_EXTERNAL_MODULES=harness_verl` (verl imports such modules when it is imported) and puts
this directory on `PYTHONPATH` for the Ray workers. Settings come from the environment variable
`HARNESS_VERL_PLUGIN` (JSON), because verl's `PolicyLossConfig` is a closed dataclass.
"""
from . import losses  # noqa: F401  (registers the loss modes)
from .dual import DualState  # noqa: F401

try:  # the worker-side step hooks (λ's update, checkpoints); absent without verl's workers
    from . import hooks

    hooks.install()
except Exception as e:  # pragma: no cover - only on a verl install without its GPU workers
    import logging

    logging.getLogger(__name__).info("harness_verl: worker hooks not installed (%s)", e)
