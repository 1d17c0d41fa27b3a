//! The emissary as a container's PID 1, and `kill`, as real processes: signals reach the
//! child's process group (from the kernel, the signal file, the deadline, the sidecar rule),
//! exit codes follow Argo's rules, orphans are reaped, background processes are not waited for,
//! and containerSet dependencies, retries, debug pauses and offloaded arguments behave as the
//! contract says. (The emissary as a non-root user in the image's own root filesystem is
//! tests/image.rs.)

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use support::{LOG_OPTS, TestPod, assert_ok, eventually, finish};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A pod whose template file says `template` (written as init would).
async fn pod_with(template: Value) -> TestPod {
    let pod = TestPod::new().await;
    std::fs::write(pod.roots().template_file(), template.to_string()).expect("template");
    pod
}

/// `emissary -- sh -c <script>` in container `name`.
fn emissary(
    pod: &TestPod,
    name: &str,
    script: &str,
    env: &[(&str, &str)],
) -> tokio::process::Command {
    let mut args = vec!["emissary"];
    args.extend(LOG_OPTS);
    args.extend(["--", "sh", "-c", script]);
    let mut all = vec![("ARGO_CONTAINER_NAME", name)];
    all.extend_from_slice(env);
    let mut cmd = pod.command(&args, &all);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn exit_code_file(pod: &TestPod, name: &str) -> String {
    std::fs::read_to_string(pod.roots().exitcode_file(name)).expect("exit code file")
}

fn signal(child: &tokio::process::Child, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id().expect("running")).expect("pid"));
    kill(pid, sig).expect("signal the emissary");
}

/// Starts `<prelude>; touch $WORK/ready; loop forever` in container `name` and waits until it
/// runs. `$WORK`, the returned directory, is where the child leaves its marker files.
async fn start_looping(
    pod: &TestPod,
    name: &str,
    prelude: &str,
) -> (tokio::process::Child, tempfile::TempDir) {
    let work = tempfile::tempdir().expect("work");
    let script = format!("{prelude}; touch $WORK/ready; while true; do sleep 0.05; done");
    let dir = work.path().to_str().expect("utf-8");
    let child = emissary(pod, name, &script, &[("WORK", dir)])
        .spawn()
        .expect("spawn");
    eventually("the child to start", || work.path().join("ready").exists()).await;
    (child, work)
}

fn plain() -> Value {
    json!({"name": "t", "container": {"image": "any"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_to_the_emissary_reaches_a_child_that_traps_it() {
    let pod = pod_with(plain()).await;
    let (child, work) = start_looping(
        &pod,
        "main",
        "trap 'echo trapped > $WORK/trapped; exit 7' TERM",
    )
    .await;
    signal(&child, Signal::SIGTERM);
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(7), "the child's own exit code");
    assert_eq!(exit_code_file(&pod, "main"), "7");
    let trapped = std::fs::read_to_string(work.path().join("trapped")).expect("trap ran");
    assert_eq!(trapped, "trapped\n");
    assert!(
        pod.termination_log().is_empty(),
        "a child's exit is not an executor failure"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signal_file_reaches_the_child_and_is_consumed() {
    let pod = pod_with(plain()).await;
    let (child, _work) = start_looping(&pod, "main", "trap 'exit 5' USR1").await;
    let signal_file = pod.roots().container_dir("main").join("signal");
    std::fs::write(&signal_file, "10").expect("write the signal file");
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(5));
    assert!(
        !signal_file.exists(),
        "the emissary removes the signal file it acted on"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_killed_by_sigkill_exits_137() {
    let pod = pod_with(plain()).await;
    let out = finish(
        emissary(&pod, "main", "kill -9 $$", &[])
            .spawn()
            .expect("spawn"),
    )
    .await;
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(exit_code_file(&pod, "main"), "137");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_in_the_past_stops_main_with_sigterm_then_sigkill() {
    let pod = pod_with(plain()).await;
    let work = tempfile::tempdir().expect("work");
    let w = work.path().display();
    // The whole process group ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    let script = format!("trap '' TERM; touch {w}/ready; while true; do sleep 0.05; done");
    let main = emissary(&pod, "main", &script, &[])
        .spawn()
        .expect("spawn main");
    eventually("the child to start", || work.path().join("ready").exists()).await;
    let mut args = vec!["wait"];
    args.extend(LOG_OPTS);
    let wait = pod
        .argoexec(
            &args,
            &[
                ("ARGO_CONTAINER_NAME", "wait"),
                ("ARGO_DEADLINE", "2001-02-03T04:05:06Z"),
                ("ARGO_TERMINATION_GRACE_PERIOD_SECONDS", "1"),
            ],
        )
        .await;
    assert_ok(&wait);
    let main = finish(main).await;
    assert_eq!(main.status.code(), Some(137));
    assert_eq!(exit_code_file(&pod, "main"), "137");
    assert_eq!(pod.termination_log(), "Step exceeded its deadline");
    let log = String::from_utf8_lossy(&wait.stderr);
    assert!(
        log.contains("signal=SIGTERM") && log.contains("signal=SIGKILL"),
        "wait escalated: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_signals_a_process_as_the_controller_calls_it() {
    let pod = TestPod::new().await;
    let mut sleeper = tokio::process::Command::new("sleep")
        .arg("100")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sleep");
    let pid = sleeper.id().expect("pid").to_string();
    let out = pod.argoexec(&["kill", "15", &pid], &[]).await;
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("killing {pid} with terminated\n")
    );
    let status = tokio::time::timeout(Duration::from_secs(30), sleeper.wait())
        .await
        .expect("sleep ended")
        .expect("status");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn background_grandchildren_are_not_waited_for_even_holding_the_log_pipe() {
    let pod = pod_with(plain()).await;
    let work = tempfile::tempdir().expect("work");
    let w = work.path().display();
    // With the output captured, the background sleep holds the stdout pipe open.
    let script = format!("sleep 1000 & echo $! > {w}/bg.pid; echo done");
    let out = finish(
        emissary(
            &pod,
            "main",
            &script,
            &[("ARGO_INCLUDE_SCRIPT_OUTPUT", "true")],
        )
        .spawn()
        .expect("spawn"),
    )
    .await;
    let bg: i32 = std::fs::read_to_string(work.path().join("bg.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let _ = kill(Pid::from_raw(bg), Signal::SIGKILL);
    assert_ok(&out);
    assert_eq!(
        std::fs::read_to_string(pod.roots().container_dir("main").join("stdout")).expect("log"),
        "done\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_are_handed_to_the_emissary_and_reaped_while_main_runs() {
    let pod = pod_with(plain()).await;
    let work = tempfile::tempdir().expect("work");
    let w = work.path().display();
    // The inner shell exits at once, so its background loop is orphaned; it ends on `go`.
    let script = format!(
        "sh -c '(while [ ! -e {w}/go ]; do sleep 0.05; done) & echo $! > {w}/orphan.pid'; \
         while [ ! -e {w}/release ]; do sleep 0.05; done"
    );
    let child = emissary(&pod, "main", &script, &[]).spawn().expect("spawn");
    let emissary_pid = child.id().expect("pid");
    let pid_file = work.path().join("orphan.pid");
    eventually("the orphan to start", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    let orphan = std::fs::read_to_string(&pid_file).expect("pid");
    let proc_dir = PathBuf::from(format!("/proc/{}", orphan.trim()));
    let parent = |stat: String| -> Option<u32> {
        // Field 4 of /proc/<pid>/stat, after the parenthesised command name.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    eventually("the orphan to be re-parented to the emissary", || {
        std::fs::read_to_string(proc_dir.join("stat"))
            .ok()
            .and_then(parent)
            == Some(emissary_pid)
    })
    .await;
    std::fs::write(work.path().join("go"), "").expect("go");
    // A zombie keeps its /proc entry until its parent, the emissary, reaps it.
    eventually("the orphan to be reaped", || !proc_dir.exists()).await;
    std::fs::write(work.path().join("release"), "").expect("release");
    assert_ok(&finish(child).await);
}

fn container_set(extra: Value) -> Value {
    let mut t = json!({"name": "t", "containerSet": {"containers": [
        {"name": "a"},
        {"name": "b", "dependencies": ["a"]},
        {"name": "main"},
    ]}});
    if let (Some(cs), Value::Object(extra)) = (t["containerSet"].as_object_mut(), extra) {
        cs.extend(extra);
    }
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_waits_for_its_dependency_and_runs_after_it_succeeds() {
    let pod = pod_with(container_set(json!({}))).await;
    let work = tempfile::tempdir().expect("work");
    let w = work.path().display();
    let mut b = emissary(&pod, "b", &format!("touch {w}/b-ran"), &[])
        .spawn()
        .expect("spawn b");
    eventually("b to start waiting", || {
        pod.roots().container_dir("a").is_dir()
    })
    .await;
    assert!(b.try_wait().expect("status").is_none(), "b waits for a");
    assert!(!work.path().join("b-ran").exists());
    let a = finish(emissary(&pod, "a", "exit 0", &[]).spawn().expect("spawn a")).await;
    assert_ok(&a);
    assert_ok(&finish(b).await);
    assert!(work.path().join("b-ran").exists());
    assert_eq!(exit_code_file(&pod, "b"), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_dependency_fails_the_member_with_its_code() {
    let pod = pod_with(container_set(json!({}))).await;
    let a = finish(emissary(&pod, "a", "exit 3", &[]).spawn().expect("spawn a")).await;
    assert_eq!(a.status.code(), Some(3));
    let b = finish(emissary(&pod, "b", "exit 0", &[]).spawn().expect("spawn b")).await;
    assert_eq!(b.status.code(), Some(64));
    assert_eq!(exit_code_file(&pod, "b"), "3");
    assert_eq!(
        pod.termination_log(),
        "dependency \"a\" exited with non-zero code: 3"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_waiting_for_a_dependency_exits_143() {
    let pod = pod_with(container_set(json!({}))).await;
    let b = emissary(&pod, "b", "exit 0", &[]).spawn().expect("spawn b");
    eventually("b to start waiting", || {
        pod.roots().container_dir("a").is_dir()
    })
    .await;
    signal(&b, Signal::SIGTERM);
    let b = finish(b).await;
    assert_eq!(b.status.code(), Some(143));
    assert_eq!(exit_code_file(&pod, "b"), "143");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retry_strategy_reruns_a_failing_member() {
    let work = tempfile::tempdir().expect("work");
    let w = work.path().display();
    let script = format!(
        "n=$(cat {w}/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > {w}/count; [ $n -ge 3 ]"
    );
    // retries: 2 means three attempts in all; the third succeeds.
    let pod = pod_with(container_set(
        json!({"retryStrategy": {"retries": 2, "duration": "10ms"}}),
    ))
    .await;
    assert_ok(&finish(emissary(&pod, "main", &script, &[]).spawn().expect("spawn")).await);
    assert_eq!(
        std::fs::read_to_string(work.path().join("count")).expect("count"),
        "3\n"
    );

    // retries: "1" (a string, as IntOrString allows) gives up after two.
    std::fs::remove_file(work.path().join("count")).expect("reset");
    let pod = pod_with(container_set(
        json!({"retryStrategy": {"retries": "1", "duration": "10ms"}}),
    ))
    .await;
    let out = finish(emissary(&pod, "main", &script, &[]).spawn().expect("spawn")).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(work.path().join("count")).expect("count"),
        "2\n"
    );
}

/// Reads the process's stderr until a line contains `needle` (bounded to 30 s).
async fn announced(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("stderr line") {
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await
    .expect("announced in time");
    assert!(found, "the emissary never logged {needle:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_pauses_hold_the_container_before_and_after_the_child() {
    let pod = pod_with(plain()).await;
    let work = tempfile::tempdir().expect("work");
    let w = work.path().display();
    let mut child = emissary(
        &pod,
        "main",
        &format!("touch {w}/ran"),
        &[
            ("ARGO_DEBUG_PAUSE_BEFORE", "true"),
            ("ARGO_DEBUG_PAUSE_AFTER", "true"),
        ],
    )
    .spawn()
    .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let ctr = pod.roots().container_dir("main");
    announced(&mut stderr, "ctr/main/before").await;
    assert!(!work.path().join("ran").exists(), "paused before the child");
    std::fs::write(ctr.join("before"), "").expect("marker");
    announced(&mut stderr, "ctr/main/after").await;
    assert!(work.path().join("ran").exists(), "the child ran");
    assert!(
        !ctr.join("exitcode").exists(),
        "paused before the exit code"
    );
    std::fs::write(ctr.join("after"), "").expect("marker");
    assert_ok(&finish(child).await);
    assert_eq!(exit_code_file(&pod, "main"), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_args_file_appends_arguments_and_offloads_huge_ones_to_files() {
    let pod = pod_with(plain()).await;
    let work = tempfile::tempdir().expect("work");
    let w = work.path().display();
    let huge = "x".repeat(200_000);
    let args_file = pod.path("/argo/config/ARGO_CONTAINER_ARGS_FILE");
    std::fs::create_dir_all(args_file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&args_file, json!(["second", huge]).to_string()).expect("args file");
    let script = format!("printf '%s\\n' \"$0\" \"$1\" \"$2\" > {w}/args");
    let mut args = vec!["emissary"];
    args.extend(LOG_OPTS);
    args.extend(["--", "sh", "-c", &script, "first"]);
    let out = pod
        .argoexec(
            &args,
            &[
                ("ARGO_CONTAINER_NAME", "main"),
                (
                    "ARGO_CONTAINER_ARGS_FILE",
                    "/argo/config/ARGO_CONTAINER_ARGS_FILE",
                ),
            ],
        )
        .await;
    assert_ok(&out);
    // Arguments after the program: -c, script, first, second, huge: the huge one is index 4.
    let offloaded = pod.path("/tmp/argo_arg_4.txt");
    assert_eq!(
        std::fs::read_to_string(work.path().join("args")).expect("args"),
        format!("first\nsecond\n@{}\n", offloaded.display())
    );
    assert_eq!(std::fs::read_to_string(offloaded).expect("offloaded"), huge);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_sidecar_stops_itself_once_main_has_finished() {
    let pod = pod_with(json!({"name": "t", "container": {}, "sidecars": [{"name": "db"}]})).await;
    let work = tempfile::tempdir().expect("work");
    let w = work.path().display();
    let script = format!("trap 'exit 0' TERM; touch {w}/ready; while true; do sleep 0.05; done");
    let sidecar = emissary(&pod, "db", &script, &[])
        .spawn()
        .expect("spawn sidecar");
    eventually("the sidecar to start", || {
        work.path().join("ready").exists()
    })
    .await;
    let main = finish(
        emissary(&pod, "main", "exit 0", &[])
            .spawn()
            .expect("spawn main"),
    )
    .await;
    assert_ok(&main);
    assert_ok(&finish(sidecar).await);
    assert_eq!(exit_code_file(&pod, "db"), "0");
}
