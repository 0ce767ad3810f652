//! Error messages say what is wrong once, and name what is missing (issue #20).
use super::harness;

#[test]
fn the_os_error_is_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    // A model folder without config.json.
    let out = harness().arg("inspect").arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.json"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

#[test]
fn a_missing_model_folder_is_a_missing_directory() {
    for spec in ["./models/nope", "/no/such/model/dir", "ex/base_dense"] {
        let out = harness().args(["inspect", spec]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("no directory {spec}")), "{err}");
        assert!(!err.contains("preset"), "{err}");
    }
    // A relative path names the folder it was looked up from.
    let out = harness()
        .args(["inspect", "ex/base_dense"])
        .current_dir("/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(relative to /)"), "{err}");
    // A bare name is a preset name: list them.
    let out = harness().args(["inspect", "qwen9"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown model preset") && err.contains("tiny-qwen3"),
        "{err}"
    );
}
