//! What a workflow controller or an artifact server does with the library crate alone
//! (`argoexec`: no executor, no Kubernetes client): resolve a workflow's artifact repository,
//! compute the keys its outputs will be stored under, plan the artifact GC of the finished
//! workflow, and stream a byte range of one artifact from the store.
//!
//! ```sh
//! cargo run --example controller -- <s3 endpoint host:port> <bucket> <secrets root>
//! ```
//!
//! The repository's credentials are read where the executor reads them: `<secrets
//! root>/argo/secret/s3-creds/{accessKey,secretKey}`. The object to stream must exist (the
//! `report` output of the example's workflow); `tests/controller_example.rs` runs it against
//! the loopback S3 server.

use std::ops::Range;
use std::path::Path;

use argoexec::contract::Roots;
use argoexec::gc::{GcNode, GcPlanner, strategies_due};
use argoexec::keys::output_key;
use argoexec::keys::template::KeyVariables;
use argoexec::model::{Artifact, Template, WorkflowLevelArtifactGc};
use argoexec::repository::{
    ConfigMapData, ConfigMaps, DEFAULT_CONFIG_MAP, DEFAULT_REPOSITORY_ANNOTATION, Resolver,
    archive_location,
};
use argoexec::storage::Secrets;
use argoexec::stream::{ByteRange, Streamer};
use argoexec::transfer::TransferConfig;
use futures::TryStreamExt;

/// The secret the example's repository names for its S3 keys.
pub const SECRET_NAME: &str = "s3-creds";
/// The byte range the example reads of the `report` artifact.
pub const RANGE: Range<u64> = 4..12;

/// What the controller decided and read.
#[derive(Debug)]
pub struct Outcome {
    /// Where the repository came from, as Argo stores it in `status.artifactRepositoryRef`.
    pub repository: String,
    /// Each output's name and the key it is stored under.
    pub output_keys: Vec<(String, String)>,
    /// Each GC pod to create: its name and the artifacts its tasks delete.
    pub gc_pods: Vec<(String, usize)>,
    /// The bytes [`RANGE`] of the `report` artifact.
    pub range: Vec<u8>,
}

/// Runs the controller's steps against the S3 store at `endpoint` (`host:port`, plain HTTP).
pub async fn run(
    endpoint: &str,
    bucket: &str,
    secrets_root: &Path,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    // 1. The workflow's namespace holds `artifact-repositories`; its annotated default entry
    //    is an S3 repository. A real controller fetches the ConfigMaps that
    //    `Resolver::candidates` names; here the one that exists is given.
    let repository_yaml = format!(
        "s3:\n  bucket: {bucket}\n  endpoint: {endpoint}\n  insecure: true\n  \
         accessKeySecret: {{name: {SECRET_NAME}, key: accessKey}}\n  \
         secretKeySecret: {{name: {SECRET_NAME}, key: secretKey}}\n  \
         keyFormat: \"runs/{{{{workflow.name}}}}/{{{{pod.name}}}}\"\n"
    );
    let mut config_maps = ConfigMaps::default();
    config_maps.insert(
        "team-a",
        DEFAULT_CONFIG_MAP,
        ConfigMapData::default()
            .with_annotation(DEFAULT_REPOSITORY_ANNOTATION, "main")
            .with_entry("main", repository_yaml),
    );
    let resolved = Resolver::new("argo", None).resolve(None, "team-a", &config_maps)?;
    let repository = resolved.to_string();
    let repo = resolved
        .artifact_repository
        .ok_or("the resolved reference carries no repository")?;

    // 2. The pod's archive location, and the key of each output under it.
    let template: Template = serde_json::from_value(serde_json::json!({
        "name": "train",
        "outputs": {"artifacts": [
            {"name": "model", "path": "/work/model"},
            {"name": "report", "path": "/work/report.txt", "archive": {"none": {}}},
        ]},
    }))?;
    let vars = KeyVariables {
        workflow_name: "wf-1".into(),
        workflow_namespace: "team-a".into(),
        pod_name: "wf-1-train-42".into(),
        ..Default::default()
    };
    let archive = archive_location(&template, Some(&repo), None, &vars)?;
    let mut output_keys = Vec::new();
    for output in &template.outputs.artifacts {
        output_keys.push((output.name.clone(), output_key(output, archive.as_ref())?));
    }

    // 3. The workflow finished: its `OnWorkflowCompletion` artifacts are due. The node's
    //    outputs are what the executor reported: key-only locations.
    let workflow_gc: WorkflowLevelArtifactGc =
        serde_json::from_value(serde_json::json!({"strategy": "OnWorkflowCompletion"}))?;
    let reported: Vec<Artifact> = output_keys
        .iter()
        .map(|(name, key)| {
            serde_json::from_value(serde_json::json!({"name": name, "s3": {"key": key}}))
        })
        .collect::<Result<_, _>>()?;
    let planner = GcPlanner {
        workflow_name: "wf-1",
        workflow_gc: Some(&workflow_gc),
        default_location: archive.as_ref(),
        ..Default::default()
    };
    let node = GcNode {
        id: "wf-1-train-42",
        archive_location: archive.as_ref(),
        outputs: &reported,
    };
    let mut gc_pods = Vec::new();
    for strategy in strategies_due(true, false, &[]) {
        for pod in planner.plan(strategy, [node])? {
            let artifacts = pod
                .tasks
                .iter()
                .flat_map(|task| task.spec.artifacts_by_node.values())
                .map(|node| node.artifacts.len())
                .sum();
            gc_pods.push((pod.name, artifacts));
        }
    }

    // 4. A range of the `report` artifact, streamed from the store (no temp file).
    let report = reported
        .iter()
        .find(|a| a.name == "report")
        .ok_or("no report output")?;
    let secrets = Secrets::new(Roots::at(secrets_root));
    let streamer = Streamer::new(TransferConfig::default());
    let wanted = ByteRange::from_http(&format!("bytes={}-{}", RANGE.start, RANGE.end - 1));
    let stream = streamer
        .open_artifact(report, archive.as_ref(), &secrets, wanted)
        .await?;
    let chunks: Vec<_> = stream.try_collect().await?;
    let range = chunks.concat();

    Ok(Outcome {
        repository,
        output_keys,
        gc_pods,
        range,
    })
}

#[cfg_attr(test, allow(dead_code))]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, bucket, secrets_root] = args.as_slice() else {
        return Err("usage: controller <s3 endpoint host:port> <bucket> <secrets root>".into());
    };
    let outcome = run(endpoint, bucket, Path::new(secrets_root)).await?;
    println!("repository: {}", outcome.repository);
    for (name, key) in &outcome.output_keys {
        println!("output {name}: {key}");
    }
    for (pod, artifacts) in &outcome.gc_pods {
        println!("gc pod {pod}: {artifacts} artifacts");
    }
    println!(
        "report bytes {}..{}: {:?}",
        RANGE.start,
        RANGE.end,
        String::from_utf8_lossy(&outcome.range)
    );
    Ok(())
}
