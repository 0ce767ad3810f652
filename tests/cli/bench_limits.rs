//! `harness bench-step` refuses what it cannot run instead of panicking or exhausting memory
//! (issue #20).
use super::harness;

#[test]
fn zero_steps_is_rejected() {
    let out = harness()
        .args(["bench-step", "--steps", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--steps"));
}

#[test]
fn released_presets_are_refused_before_allocating() {
    let out = harness()
        .args(["bench-step", "--model", "qwen3-8b", "--steps", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tiny presets") && err.contains("bench-train"),
        "{err}"
    );
}
