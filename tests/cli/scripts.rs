//! The shell scripts users run or source.
use super::root;
use std::process::Command;

fn bash(script: &str) -> String {
    let o = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(root())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The README tells users to `. scripts/env.sh` in their shell: it must not turn on `set -e`,
/// `set -u` or `pipefail` there (the first failing command would close an interactive terminal).
#[test]
fn sourcing_env_sh_leaves_shell_options_alone() {
    let out = bash(
        "set +euo pipefail; . scripts/env.sh; echo \"flags=$-\"; \
         shopt -qo pipefail && echo PIPEFAIL; shopt -qo nounset && echo NOUNSET; \
         false; echo still-here",
    );
    let flags = out.lines().find_map(|l| l.strip_prefix("flags=")).unwrap();
    assert!(!flags.contains('e') && !flags.contains('u'), "{out}");
    assert!(
        !out.contains("PIPEFAIL") && !out.contains("NOUNSET"),
        "{out}"
    );
    assert!(out.contains("still-here"), "{out}");
}

/// `nproc` honours the OMP_NUM_THREADS=1 that env.sh exports; the scripts count cores without it.
#[test]
fn scripts_count_cores_despite_omp_num_threads() {
    let out = bash("OMP_NUM_THREADS=1; . scripts/env.sh; harness_cores");
    let want = Command::new("nproc")
        .env_remove("OMP_NUM_THREADS")
        .env_remove("OMP_THREAD_LIMIT")
        .output()
        .unwrap();
    assert_eq!(out.trim(), String::from_utf8_lossy(&want.stdout).trim());
    for s in ["scripts/main.sh", "benches/jobs_scaling.sh"] {
        let text = std::fs::read_to_string(root().join(s)).unwrap();
        assert!(
            !text.contains("$(nproc)") && text.contains("harness_cores"),
            "{s} counts cores with nproc"
        );
    }
}
