//! Every command of Argo's executor is recognised, with the controller's exact command-line
//! shapes (docs/contract.md#commands, #the-pod): none ends in a usage error (exit 2). Commands that
//! cannot work here fail with exit 64 and a message saying why.

mod support;

use support::{LOG_OPTS, TestPod};

#[tokio::test]
async fn the_controllers_command_lines_all_parse() {
    let pod = TestPod::new().await;
    let data_json = r#"{"source":{"artifactPaths":{"name":"x"}}}"#;
    let lines: Vec<Vec<&str>> = vec![
        vec!["init"],
        vec!["wait"],
        vec!["resource", "get"],
        vec!["data", data_json],
        vec!["agent", "init"],
        vec!["agent", "main"],
        vec!["supervisor"],
        vec!["artifact", "delete"],
        vec![
            "artifact-plugin-init",
            "--plugin-name",
            "p",
            "--",
            "plugin-server",
        ],
        vec!["artifact-plugin-sidecar", "--", "plugin-server"],
    ];
    for words in lines {
        let mut args = words.clone();
        args.extend(LOG_OPTS);
        // No template, API or plugin list: each fails, but as a command, not as a parse error.
        let out = pod.argoexec(&args, &[("ARGO_ARTIFACT_POD_NAME", "")]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(2), "{words:?}: {stderr}");
        assert!(!stderr.contains("Usage:"), "{words:?}: {stderr}");
    }
    // A plugin sidecar whose server cannot start says why, and records exit code 64 for wait.
    let mut args = vec!["artifact-plugin-sidecar"];
    args.extend(LOG_OPTS);
    args.extend([
        "--",
        "/nonexistent/plugin-server",
        "/tmp/artifact-plugins/p/socket",
    ]);
    let out = pod
        .argoexec(&args, &[("ARGO_CONTAINER_NAME", "artifact-plugin-p")])
        .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        pod.termination_log()
            .starts_with("failed to start command: "),
        "{}",
        pod.termination_log()
    );
    assert_eq!(
        std::fs::read_to_string(pod.roots().exitcode_file("artifact-plugin-p")).expect("exit code"),
        "64"
    );
}

/// `version` answers without starting the async runtime (a worker thread per core, and the
/// cgroup reads that count them, were most of its start-up time): it runs in a process that may
/// not create a single thread. `setpriv` drops to an unprivileged uid, as root ignores
/// `RLIMIT_NPROC`, and `prlimit` allows that uid one process, so any thread start fails.
#[test]
fn version_starts_no_thread() {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["prlimit", "--nproc=1:1", env!("CARGO_BIN_EXE_argoexec")])
        .args(["version", "--short"])
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("argoexec: v{}\n", env!("CARGO_PKG_VERSION"))
    );
}
