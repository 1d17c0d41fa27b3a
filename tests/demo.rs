//! The README's first command, run by the test suite so it cannot rot: the demo script with a
//! small dataset, on the binaries this test run built (the script builds nothing then).

use std::path::Path;

#[test]
fn the_demo_runs_a_two_step_workflow_end_to_end() {
    let argoexec = Path::new(env!("CARGO_BIN_EXE_argoexec"));
    // The S3 server is another package's binary, which no test build links: scripts/test.sh
    // builds every target of the workspace first.
    let s3_server = argoexec.with_file_name("s3-server");
    assert!(
        s3_server.exists(),
        "{} is missing: run scripts/test.sh, or cargo build --workspace --all-targets first",
        s3_server.display()
    );
    let out = std::process::Command::new("scripts/demo.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ARGOEXEC_BIN", argoexec)
        .env("S3_SERVER_BIN", &s3_server)
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
