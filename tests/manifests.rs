//! The manifests in `deploy/` are what users apply: each must be valid Kubernetes YAML, and every
//! template, artifact and repository in them must read as the executor reads it (our model
//! types, Argo's rules), so a copied example never fails at its first step.

use std::path::{Path, PathBuf};

use argoexec::keys::template::KeyVariables;
use argoexec::model::{ArtifactRepository, LocationKind, Template};
use argoexec::repository::{
    ConfigMapData, ConfigMaps, Resolver, archive_location, artifact_location,
};
use argoexec::transfer::TransferConfig;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every `.yaml` file below `deploy/`, with its documents.
fn manifests() -> Vec<(PathBuf, Vec<Value>)> {
    let mut files = Vec::new();
    let mut pending = vec![deploy_dir()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read deploy/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).expect("read manifest");
                let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                    .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
                files.push((path, docs));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(files.len() >= 6, "deploy/ holds the manifests: {files:?}");
    files
}

fn all_documents() -> Vec<Value> {
    manifests().into_iter().flat_map(|(_, docs)| docs).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

/// A YAML string field (a ConfigMap value, a podSpecPatch) parsed as one document.
fn embedded(value: &Value, what: &str) -> Value {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string"));
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
}

#[test]
fn every_document_is_a_kubernetes_object() {
    for (path, docs) in manifests() {
        assert!(!docs.is_empty(), "{} is empty", path.display());
        for doc in docs {
            let what = format!("{} ({})", path.display(), doc["kind"]);
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            assert!(
                !api_version.is_empty() && doc["kind"].is_string(),
                "{what}: apiVersion and kind"
            );
            let meta = &doc["metadata"];
            assert!(
                meta["name"].is_string() || meta["generateName"].is_string(),
                "{what}: metadata.name or generateName"
            );
            if doc["kind"] == "ConfigMap" {
                for (key, value) in doc["data"].as_object().expect("ConfigMap data") {
                    assert!(value.is_string(), "{what}: data.{key} must be a string");
                }
            }
        }
    }
}

#[test]
fn the_controller_config_switches_the_executor_image() {
    let docs = all_documents();
    let config = find(&docs, "ConfigMap", "workflow-controller-configmap");
    let executor = embedded(&config["data"]["executor"], "executor");
    let image = executor["image"].as_str().expect("executor.image");
    assert!(image.contains("argoexec-rs:"), "{image}");
    // The documented image reference is the one the manifest sets.
    let ops =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .expect("docs/operations.md");
    assert!(ops.contains(image), "docs/operations.md shows {image}");
    let security = &executor["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 8737, "the image's USER");
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert!(executor["resources"]["limits"]["memory"].is_string());
}

const NS: &str = "argo";

/// The `artifact-repositories` ConfigMap, as repository resolution reads it.
fn config_maps(docs: &[Value]) -> ConfigMaps {
    let repos = find(docs, "ConfigMap", "artifact-repositories");
    assert_eq!(repos["metadata"]["namespace"], NS);
    let mut data = ConfigMapData::default();
    for (key, text) in repos["data"].as_object().expect("data") {
        data = data.with_entry(key.as_str(), text.as_str().expect("a string entry"));
    }
    for (name, value) in repos["metadata"]["annotations"]
        .as_object()
        .expect("annotations")
    {
        data = data.with_annotation(name.as_str(), value.as_str().expect("a string"));
    }
    let mut maps = ConfigMaps::default();
    maps.insert(NS, "artifact-repositories", data);
    maps
}

/// The repository a workflow without `artifactRepositoryRef` gets, resolved as the controller
/// resolves it (no controller default: the ConfigMap's annotated entry must be found).
fn default_repository(docs: &[Value]) -> ArtifactRepository {
    let resolved = Resolver::new(NS, None)
        .resolve(None, NS, &config_maps(docs))
        .expect("the namespace default resolves");
    assert_eq!(
        resolved.to_string(),
        "argo/artifact-repositories#s3-default"
    );
    resolved.artifact_repository.expect("the resolved entry")
}

#[test]
fn the_default_repository_is_annotated_and_every_repository_reads() {
    let docs = all_documents();
    let default = default_repository(&docs);
    let s3 = default.s3.as_ref().expect("an s3 repository");
    assert_eq!(s3.bucket.bucket, "argo-artifacts");
    assert!(default.is_archive_logs());
    for (name, text) in config_maps(&docs)
        .get(NS, "artifact-repositories")
        .expect("inserted")
        .data
        .iter()
    {
        let repo = ArtifactRepository::from_yaml(text)
            .unwrap_or_else(|e| panic!("repository {name}: {e}"));
        let location = repo.to_location().expect("a store");
        assert!(location.kind().is_some(), "repository {name} names a store");
        assert!(
            repo.key_pattern()
                .is_some_and(|k| k.contains("{{workflow.name}}") && k.contains("{{pod.name}}")),
            "repository {name} keys by workflow and pod: {:?}",
            repo.key_pattern()
        );
    }
    // The credentials the default repository names exist, with the keys it names.
    let secret = find(&docs, "Secret", "argo-artifacts-s3");
    for selector in [&s3.bucket.access_key_secret, &s3.bucket.secret_key_secret] {
        let selector = selector.as_ref().expect("secret selector");
        assert_eq!(selector.name, "argo-artifacts-s3");
        assert!(
            secret["stringData"][&selector.key].is_string(),
            "{}",
            selector.key
        );
    }
}

/// Every template of every Workflow, read as the executor reads `ARGO_TEMPLATE`.
fn workflow_templates(docs: &[Value]) -> Vec<(String, Value, Template)> {
    docs.iter()
        .filter(|d| d["kind"] == "Workflow")
        .flat_map(|wf| {
            let wf_name = wf["metadata"]["generateName"]
                .as_str()
                .unwrap_or("workflow");
            wf["spec"]["templates"]
                .as_array()
                .expect("spec.templates")
                .iter()
                .map(move |t| {
                    let name = format!("{wf_name}{}", t["name"].as_str().unwrap_or_default());
                    let parsed = Template::from_json(t.to_string().as_bytes())
                        .unwrap_or_else(|e| panic!("template {name}: {e}"));
                    (name, t.clone(), parsed)
                })
        })
        .collect()
}

#[test]
fn workflow_templates_and_artifacts_read_as_the_executor_reads_them() {
    let docs = all_documents();
    let default = default_repository(&docs);
    let templates = workflow_templates(&docs);
    assert!(templates.len() >= 6, "{}", templates.len());
    let vars = KeyVariables {
        workflow_name: "wf-abc".into(),
        workflow_namespace: NS.into(),
        pod_name: "wf-abc-step-1234".into(),
        ..Default::default()
    };
    let mut key_only = 0;
    for (name, _, template) in &templates {
        // The archive location the controller gives this template's pod.
        let archive = archive_location(template, Some(&default), None, &vars)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for art in template
            .inputs
            .artifacts
            .iter()
            .chain(&template.outputs.artifacts)
        {
            assert!(!art.path.is_empty(), "{name}/{}: a path", art.name);
            let placed = artifact_location(art, archive.as_ref())
                .unwrap_or_else(|e| panic!("{name}/{}: {e}", art.name));
            assert_eq!(placed.kind(), Some(LocationKind::S3), "{name}/{}", art.name);
            if art.location.has_location_or_key() && !art.location.has_location() {
                // Key-only: in the default repository under exactly its key.
                key_only += 1;
                assert_eq!(placed.key(), art.location.key(), "{name}/{}", art.name);
                assert_eq!(
                    placed.s3.as_ref().map(|s| s.bucket.as_str()),
                    Some("argo-artifacts")
                );
            }
        }
    }
    assert!(
        key_only >= 2,
        "the key-only example has an output and an input"
    );
}

#[test]
fn artifact_gc_strategies_are_argos() {
    const STRATEGIES: [&str; 3] = ["OnWorkflowCompletion", "OnWorkflowDeletion", "Never"];
    let docs = all_documents();
    let mut seen = Vec::new();
    for wf in docs.iter().filter(|d| d["kind"] == "Workflow") {
        if let Some(strategy) = wf["spec"]["artifactGC"]["strategy"].as_str() {
            seen.push(strategy.to_string());
        }
    }
    for (name, _, template) in workflow_templates(&docs) {
        for art in &template.outputs.artifacts {
            if let Some(gc) = &art.artifact_gc {
                assert!(
                    STRATEGIES.contains(&gc.strategy.as_str()),
                    "{name}/{}: {}",
                    art.name,
                    gc.strategy
                );
                seen.push(gc.strategy.clone());
            }
        }
    }
    for strategy in STRATEGIES {
        assert!(
            seen.iter().any(|s| s == strategy),
            "an example of {strategy}"
        );
    }
}

/// Mebibytes of a Kubernetes quantity (`320Mi`, `1Gi`).
fn mib(quantity: &Value) -> u64 {
    let q = quantity.as_str().expect("a quantity string");
    if let Some(n) = q.strip_suffix("Mi") {
        n.parse().expect("Mi")
    } else if let Some(n) = q.strip_suffix("Gi") {
        n.parse::<u64>().expect("Gi") * 1024
    } else {
        panic!("use Mi or Gi: {q}")
    }
}

/// The static release binary's peak RSS moving an artifact, less its transfer buffers: about
/// 20 MiB measured both ways (docs/operations.md, "Memory"), rounded up.
const PROCESS_MIB: u64 = 24;

/// The transfer settings a container of a podSpecPatch runs with: its env over the defaults.
fn transfer_config(container: &Value) -> TransferConfig {
    let env = container["env"].as_array().cloned().unwrap_or_default();
    TransferConfig::from_lookup(|name| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    })
}

#[test]
fn pod_spec_patches_give_the_executor_its_buffers_and_headroom() {
    let docs = all_documents();
    let mut patched = 0;
    for (name, raw, _) in workflow_templates(&docs) {
        let Some(patch) = raw.get("podSpecPatch") else {
            continue;
        };
        let patch = embedded(patch, &format!("{name} podSpecPatch"));
        for (list, container) in [("containers", "wait"), ("initContainers", "init")] {
            let Some(c) = patch[list]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["name"] == container))
            else {
                continue;
            };
            patched += 1;
            let cfg = transfer_config(c);
            let budget = match container {
                "wait" => cfg.upload_budget(),
                _ => cfg.download_budget(),
            } >> 20;
            let limit = mib(&c["resources"]["limits"]["memory"]);
            let request = mib(&c["resources"]["requests"]["memory"]);
            // The buffers at most, the process itself, and half the buffers again of headroom
            // (allocator slack, TLS and HTTP buffers per connection).
            assert!(
                limit >= PROCESS_MIB + budget + budget / 2,
                "{name}/{container}: a {limit}Mi limit for {budget} MiB of buffers"
            );
            assert!(
                request >= PROCESS_MIB + budget,
                "{name}/{container}: {request}Mi requested for {budget} MiB of buffers"
            );
        }
    }
    assert!(
        patched >= 2,
        "the large-artifact example sizes wait and init"
    );
}

#[test]
fn the_executor_role_is_argos_minimum() {
    let docs = all_documents();
    let role = find(&docs, "Role", "argoexec");
    let mut rules: Vec<String> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| {
            let verbs: Vec<String> = r["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .map(|v| v.as_str().expect("verb").to_string())
                .collect();
            r["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .map(move |res| format!("{}: {}", res.as_str().expect("resource"), verbs.join(",")))
        })
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            "workflowartifactgctasks/status: patch",
            "workflowartifactgctasks: list,watch",
            "workflowtaskresults: create,patch",
        ]
    );
    let binding = find(&docs, "RoleBinding", "argoexec");
    assert_eq!(binding["roleRef"]["name"], "argoexec");
}
