//! A run's config as a verl 0.9.1 launch: `python -m harness_verl.launch` with Hydra overrides of
//! verl's `ppo_trainer.yaml`, the environment that loads the harness's policy-loss plugins
//! (`python/harness_verl/`) into every verl process, and the run directory layout
//! (`runs/<id>/checkpoints/`, `runs/<id>/verl_metrics.jsonl`, read back by
//! [`super::verl_log`]). The settings themselves (overrides, plugin, data files) and the errors for
//! settings with no verl equivalent ([`check`], one of config's checks) come from
//! `crate::config::verl`: config runs that check, and config may not import this layer.
use crate::config::verl::settings;
pub use crate::config::verl::{check, RunPlace, DCMDP_IS_THRESHOLD};
use crate::config::RunConfig;
use std::path::Path;

/// verl's log file in a run directory.
pub const VERL_LOG: &str = "verl_metrics.jsonl";

/// One run's verl launch.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// `NAME=value` pairs exported before the launcher starts.
    pub env: Vec<(String, String)>,
    /// Hydra overrides of verl's `ppo_trainer.yaml`, in order.
    pub overrides: Vec<String>,
    pub python: String,
    /// Data files to convert to verl's Parquet schema first: (name, source file).
    pub data: Vec<(String, String)>,
    pub data_source: String,
}

/// The launch of a checked `backend: verl` run (`None` for a harness run).
pub fn launch(cfg: &RunConfig, place: &RunPlace) -> Option<Launch> {
    let v = cfg.backend.verl()?;
    // Checked: the mapping found nothing verl cannot honour.
    let (s, _) = settings(&cfg.clone().into_raw(), v, place);
    let dir = place.run_dir.display();
    let mut env = vec![
        (
            "VERL_USE_EXTERNAL_MODULES".to_string(),
            "harness_verl".to_string(),
        ),
        (
            "VERL_FILE_LOGGER_PATH".to_string(),
            format!("{dir}/{VERL_LOG}"),
        ),
    ];
    if let Some(p) = s.plugin {
        env.push(("HARNESS_VERL_PLUGIN".into(), p));
    }
    Some(Launch {
        env,
        overrides: s.overrides,
        python: v.python.clone(),
        data: s.data,
        data_source: v.data_source.clone(),
    })
}

/// Single-quote for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Launch {
    /// The launch as one shell command, run from the repository root (the data conversion, then
    /// verl's trainer through the plugin launcher).
    pub fn command(&self, repo: &Path, run_dir: &Path) -> String {
        let q = shell_quote;
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", q(v)))
            .chain(std::iter::once(format!(
                "PYTHONPATH={}/python${{PYTHONPATH:+:$PYTHONPATH}}",
                q(&repo.display().to_string())
            )))
            .collect();
        let data: Vec<String> = self
            .data
            .iter()
            .map(|(n, f)| q(&format!("{n}={f}")))
            .collect();
        let overrides: Vec<String> = self.overrides.iter().map(|o| q(o)).collect();
        format!(
            "env {env} {py} -m harness_verl.launch --run-dir {dir} --data-source {ds} --data {data} -- {ov}",
            env = env.join(" "),
            py = q(&self.python),
            dir = q(&run_dir.display().to_string()),
            ds = q(&self.data_source),
            data = data.join(" "),
            ov = overrides.join(" "),
        )
    }
}
