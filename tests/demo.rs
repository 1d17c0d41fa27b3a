//! The README's first command, run by the test suite so it cannot rot: the demo script on the
//! debug build with a small dataset.

#[test]
fn the_demo_runs_a_two_step_workflow_end_to_end() {
    let out = std::process::Command::new("scripts/demo.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ARGOEXEC_PROFILE", "dev")
        .env("DEMO_MIB", "8")
        .output()
        .expect("demo ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("demo/demo-generate/dataset.tgz"),
        "{stdout}"
    );
    assert!(stdout.contains("summary.txt identical"), "{stdout}");
    assert!(stdout.contains("main saw 202 files"), "{stdout}");
}
