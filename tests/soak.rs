//! Soak: many artifacts through the real `wait` and `init`, every request through the
//! fault-injecting proxy with random faults (5xx and SlowDown answers, resets mid-request,
//! request bodies corrupted on the way up, responses truncated or corrupted on the way down).
//! Every artifact must come back exactly as it was produced: zero corrupted objects.
//!
//! The CI run is small and bounded; `scripts/soak.sh` runs it long. Knobs (environment):
//! `ARGOEXEC_SOAK_ARTIFACTS` (default 40), `ARGOEXEC_SOAK_FAULT_PERCENT` (default 5),
//! `ARGOEXEC_SOAK_SEED` (default 1). The figures are printed at the end (`soak figures: ...`).

mod support;

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};
use support::fault_proxy::FaultProxy;
use support::{TestPod, assert_ok};

/// Artifacts per `wait` + `init` round.
const BATCH: usize = 20;

fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The shape of one artifact, drawn from the seed.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A file stored as it is (`archive: none`): one PUT, or multipart above 5 MiB.
    Raw(usize),
    /// A file stored as a tgz.
    Tgz(usize),
    /// A directory of a few files, stored as a tgz.
    Dir(usize),
}

/// xorshift64*, deterministic per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Mostly small objects, some of a few MiB, a few multipart ones.
    fn size(&mut self) -> usize {
        match self.below(20) {
            0 => (6 << 20) + self.below(6 << 20) as usize,
            1..=3 => (1 << 20) + self.below(3 << 20) as usize,
            _ => self.below(200 << 10) as usize,
        }
    }

    fn shape(&mut self) -> Shape {
        match self.below(3) {
            0 => Shape::Raw(self.size()),
            1 => Shape::Tgz(self.size()),
            _ => Shape::Dir(self.size()),
        }
    }
}

/// Writes artifact `i` of `shape` under `work` and returns its output spec.
fn produce(work: &Path, i: usize, shape: Shape, seed: u32) -> Value {
    let name = format!("a{i}");
    let path = format!("/work/{name}");
    let local = work.join(&name);
    match shape {
        Shape::Raw(n) | Shape::Tgz(n) => {
            std::fs::write(&local, support::pseudo_random(n, seed)).expect("file");
        }
        Shape::Dir(n) => {
            std::fs::create_dir_all(local.join("sub")).expect("dir");
            std::fs::write(local.join("one"), support::pseudo_random(n, seed)).expect("one");
            std::fs::write(
                local.join("sub/two"),
                support::pseudo_random(n / 3, seed + 1),
            )
            .expect("two");
        }
    }
    match shape {
        Shape::Raw(_) => json!({"name": name, "path": path, "archive": {"none": {}}}),
        _ => json!({"name": name, "path": path}),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_survive_random_faults_without_corruption() {
    let artifacts = knob("ARGOEXEC_SOAK_ARTIFACTS", 40) as usize;
    let percent = knob("ARGOEXEC_SOAK_FAULT_PERCENT", 5);
    let seed = knob("ARGOEXEC_SOAK_SEED", 1);
    assert!(
        artifacts > 0 && percent < 50,
        "a soak needs artifacts and mostly-working requests"
    );
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.chaos(percent, seed);
    let mut rng = Rng(seed.max(1) * 0x9E37_79B9);
    // Enough attempts that a run of faults on one request is vanishingly rare at 5 %; whole-
    // object checksums on multipart uploads too (the test server keeps them, as S3 does), so
    // that every download is checked, not only those of single-request uploads.
    let env = [
        ("EXECUTOR_RETRY_BACKOFF_STEPS", "10"),
        ("ARGOEXEC_PART_SIZE_MIB", "5"),
        ("ARGOEXEC_DOWNLOAD_CHUNK_MIB", "2"),
        ("ARGOEXEC_S3_FULL_OBJECT_CHECKSUM", "true"),
    ];
    let started = Instant::now();
    let (mut bytes, mut retries, mut refetches, mut done) = (0u64, 0usize, 0usize, 0usize);
    for round in 0..artifacts.div_ceil(BATCH) {
        let work = pod.path("/mainctrfs/work");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("work");
        let count = BATCH.min(artifacts - done);
        let outputs: Vec<Value> = (done..done + count)
            .map(|i| produce(&work, i, rng.shape(), i as u32 + 1))
            .collect();
        let prefix = format!("soak/{round}");
        let template = json!({
            "name": "produce",
            "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
            "outputs": {"artifacts": outputs},
            "archiveLocation": {"s3": pod.s3_via(proxy.addr, &prefix)},
        });
        let out = pod.wait(&template, &env).await;
        assert_ok(&out);
        retries += count_retries(&out);

        let inputs: Vec<Value> = outputs
            .iter()
            .map(|o| {
                let name = o["name"].as_str().expect("name");
                let file = if o.get("archive").is_some() {
                    name.to_string()
                } else {
                    format!("{name}.tgz")
                };
                json!({"name": name, "path": format!("/in/{name}"),
                       "s3": pod.s3_via(proxy.addr, &format!("{prefix}/{file}"))})
            })
            .collect();
        let consume = json!({"name": "consume", "inputs": {"artifacts": inputs}});
        let _ = std::fs::remove_dir_all(pod.path("/argo/inputs/artifacts"));
        std::fs::create_dir_all(pod.path("/argo/inputs/artifacts")).expect("inputs");
        let out = pod.init_with(&consume, &env).await;
        assert_ok(&out);
        retries += count_retries(&out);
        refetches += String::from_utf8_lossy(&out.stderr)
            .matches("corrupt download, fetching the object again")
            .count();

        for o in &outputs {
            let name = o["name"].as_str().expect("name");
            let source = work.join(name);
            let loaded = pod.roots().input_artifact(name);
            assert_eq!(
                support::snapshot_or_file(&loaded),
                support::snapshot_or_file(&source),
                "artifact {name} of round {round} differs from what was produced"
            );
            bytes += support::snapshot_or_file(&source)
                .iter()
                .map(|e| e.2.len() as u64)
                .sum::<u64>();
        }
        done += count;
    }
    let seen = proxy.seen();
    let faults = seen.iter().filter(|s| s.fault.is_some()).count();
    eprintln!(
        "soak figures: artifacts={done} bytes={bytes} requests={} faults_injected={faults} retries_logged={retries} whole_object_refetches={refetches} seconds={:.1} seed={seed} fault_percent={percent}",
        seen.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        faults > 0,
        "faults were injected: the soak proves nothing otherwise"
    );
}

/// Retries the run logged (`transient failure, retrying`).
fn count_retries(out: &std::process::Output) -> usize {
    String::from_utf8_lossy(&out.stderr)
        .matches("transient failure, retrying")
        .count()
}
