//! `harness objective`: evaluate one configured algorithm (with its corrections) on a dumped
//! batch, so a step can be replayed against another framework (see `docs/algorithms.md`).
use super::{CliResult, Failure};
use anyhow::{anyhow, Context};
use harness::diagnostics::rollout_corr_with;
use harness::objective::batch_io::{save_tensors, DumpedBatch};
use harness::objective::correction::apply_corrections;
use harness::objective::{
    build_algorithm, AdvantageInput, Advantages, AlgorithmConfig, Metrics, PolicyBatch, StepStats,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Evaluate an algorithm on a dumped batch: writes the loss, every metric (`metrics/<name>`), the
/// advantages (and PPO's returns), the loss mask after corrections (`kept_mask`), the IS weights
/// (`is_weights`, when a correction weights) and ∂loss/∂logp (`grad_logp`; PPO also
/// `grad_values`) to a safetensors file, and prints the loss and metrics. The batch format (tensor
/// names and shapes) is documented in `docs/algorithms.md` and `harness::objective::batch_io`.
#[derive(clap::Args)]
pub struct Args {
    /// YAML with the algorithm: an `algorithm:` mapping as in a run config, or that mapping alone.
    #[arg(long)]
    config: PathBuf,
    /// The dumped batch (safetensors).
    #[arg(long)]
    batch: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> CliResult {
    let cfg = read_config(&a.config).map_err(Failure::bad_input)?;
    let batch = DumpedBatch::load(&a.batch).map_err(Failure::bad_input)?;
    let ev = evaluate(&cfg, &batch).map_err(Failure::bad_input)?;
    ev.save(&a.out)?;
    // A closed pipe (`| head`) is not an error: the results are in the file.
    let mut out = std::io::stdout().lock();
    let lines = std::iter::once(("loss".to_string(), ev.loss)).chain(ev.metrics.clone());
    for (k, v) in lines {
        if let Err(e) = writeln!(out, "{k} {v:.10e}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// The algorithm config of a YAML file, checked.
fn read_config(path: &Path) -> anyhow::Result<AlgorithmConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("{}: invalid YAML", path.display()))?;
    let value = match value.get("algorithm") {
        Some(v) => v.clone(),
        None => value,
    };
    let cfg: AlgorithmConfig =
        serde_yaml::from_value(value).with_context(|| format!("{}: algorithm", path.display()))?;
    let problems = cfg.check();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("algorithm.{p}")).collect();
        return Err(anyhow!("{}: {}", path.display(), list.join("; ")));
    }
    Ok(cfg)
}

struct Evaluation {
    loss: f64,
    grad_logp: Tensor,
    grad_values: Option<Tensor>,
    advantages: Advantages,
    kept_mask: Tensor,
    is_weights: Option<Tensor>,
    metrics: Metrics,
}

impl Evaluation {
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let loss = Tensor::from(self.loss);
        let mut named: Vec<(String, &Tensor)> = vec![
            ("loss".into(), &loss),
            ("grad_logp".into(), &self.grad_logp),
            ("advantages".into(), &self.advantages.advantages),
            ("kept_mask".into(), &self.kept_mask),
        ];
        let optional = [
            ("grad_values", &self.grad_values),
            ("returns", &self.advantages.returns),
            ("is_weights", &self.is_weights),
        ];
        named.extend(
            optional
                .iter()
                .filter_map(|(n, t)| t.as_ref().map(|t| (n.to_string(), t))),
        );
        let metric_tensors: Vec<(String, Tensor)> = self
            .metrics
            .iter()
            .map(|(k, v)| (format!("metrics/{k}"), Tensor::from(*v)))
            .collect();
        named.extend(metric_tensors.iter().map(|(n, t)| (n.clone(), t)));
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        save_tensors(path, &refs)?;
        Ok(())
    }
}

/// The advantages a batch gives, or the algorithm computes from its rewards.
fn advantages(
    algo: &mut dyn harness::objective::Algorithm,
    b: &DumpedBatch,
) -> anyhow::Result<Advantages> {
    if let Some(adv) = &b.advantages {
        return Ok(Advantages {
            advantages: adv.shallow_clone(),
            returns: b.returns.as_ref().map(Tensor::shallow_clone),
            metrics: Metrics::new(),
        });
    }
    let rewards = b
        .rewards
        .as_ref()
        .ok_or_else(|| anyhow!("the batch needs `advantages` or `rewards`"))?;
    let mut input = AdvantageInput::new(rewards, &b.mask, 1);
    if algo.needs_value_model() {
        let v = b.old_values.as_ref().ok_or_else(|| {
            anyhow!("ppo computes its advantages from `old_values` (or give `advantages`)")
        })?;
        input = input.with_values(v);
    } else {
        let ids = b.group_ids.as_ref().ok_or_else(|| {
            anyhow!("group advantages need `group_ids` with `rewards` (or give `advantages`)")
        })?;
        input = input.with_group_ids(ids);
    }
    if let Some(r) = &b.ref_logp {
        input = input.with_logps(&b.old_logp, r);
    }
    Ok(algo.advantages(&input))
}

/// Advantages, one loss evaluation at `logp` (the whole batch as one mini-batch, DCMDP's λ =
/// `lambda_0`, its gate from the batch's δ̄) with gradients, and every metric.
fn evaluate(cfg: &AlgorithmConfig, b: &DumpedBatch) -> anyhow::Result<Evaluation> {
    let mut algo = build_algorithm(cfg);
    let need = |ok: bool, what: &str| -> anyhow::Result<()> {
        ok.then_some(())
            .ok_or_else(|| anyhow!("{} needs {what} in the batch", cfg.name()))
    };
    need(
        !algo.needs_ref_policy() || b.ref_logp.is_some(),
        "`ref_logp` (KL penalty)",
    )?;
    need(
        !algo.needs_rollout_topk() || (b.rollout_topk_logp.is_some() && b.topk_logp.is_some()),
        "`rollout_topk_logp` and `topk_logp` (top-K divergence)",
    )?;
    need(
        !algo.needs_value_model() || (b.values.is_some() && b.old_values.is_some()),
        "`values` and `old_values`",
    )?;
    let adv = advantages(algo.as_mut(), b)?;
    need(
        !algo.needs_value_model() || adv.returns.is_some(),
        "`returns` with `advantages` (or `rewards` for GAE)",
    )?;
    let stats = StepStats::from_logps(&b.old_logp, &b.rollout_logp, &b.mask);
    algo.begin_step(&stats);
    let logp = b.logp.detach().copy().set_requires_grad(true);
    let values = b
        .values
        .as_ref()
        .map(|v| v.detach().copy().set_requires_grad(true));
    let mut batch = PolicyBatch::new(
        &logp,
        &b.old_logp,
        &b.rollout_logp,
        &adv.advantages,
        &b.mask,
    );
    if let Some(r) = &b.ref_logp {
        batch = batch.with_ref(r);
    }
    if let (Some(mk), Some(pk)) = (&b.rollout_topk_logp, &b.topk_logp) {
        batch = batch.with_topk(mk, pk);
    }
    if let (true, Some(v), Some(o), Some(r)) = (
        algo.needs_value_model(),
        &values,
        &b.old_values,
        &adv.returns,
    ) {
        batch = batch.with_values(v, o, r);
    }
    let (loss, loss_metrics) = algo.loss(&batch);
    loss.backward();
    let corrected = apply_corrections(&b.old_logp, &b.rollout_logp, &b.mask, cfg.corrections());
    let mut metrics = rollout_corr_with(
        &b.old_logp,
        &b.rollout_logp,
        &b.mask,
        cfg.corrections(),
        None,
    );
    metrics.extend(adv.metrics.clone());
    metrics.extend(loss_metrics);
    metrics.extend(algo.end_step(&stats));
    Ok(Evaluation {
        loss: loss.double_value(&[]),
        grad_logp: logp.grad(),
        grad_values: values
            .filter(|_| algo.needs_value_model())
            .map(|v| v.grad()),
        advantages: adv,
        kept_mask: corrected.kept,
        is_weights: corrected.weights,
        metrics,
    })
}
