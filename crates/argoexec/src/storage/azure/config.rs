//! From an Argo `azure:` location and its mounted secret to a container client.
//!
//! Argo's rules (docs/contract.md#storage): the container URL is `endpoint + "/" + container`;
//! `useSDKCreds` authenticates with Entra ID; otherwise `accountKeySecret` is required and holds
//! either a SAS query string (used as it is) or the account key (signed into a container SAS
//! here, see [`super::sas`]), whose account name is the endpoint's first DNS label, or its first
//! path segment on `127.0.0.1`/`localhost` (Azurite's path-style URLs).

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RetryOptions, Transport, Url};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};

use super::sas;
use crate::model::AzureArtifact;
use crate::storage::timeouts::Timeouts;
use crate::storage::{Error, Result, Secrets, StorageConfig};

/// How requests to the container are authenticated.
enum Auth {
    /// A SAS query string, appended to every request URL.
    Sas(String),
    /// An Entra ID token credential (`useSDKCreds`).
    Token(Arc<dyn TokenCredential>),
}

/// The container URL: the endpoint with the container appended as a path segment.
pub fn container_url(endpoint: &str, container: &str) -> Result<Url> {
    let mut url = Url::parse(endpoint.trim()).map_err(|e| {
        Error::config(format!(
            "unable to parse Azure Blob Storage endpoint url {endpoint}: {e}"
        ))
    })?;
    if url.cannot_be_a_base() {
        return Err(Error::config(format!(
            "unable to parse Azure Blob Storage endpoint url {endpoint}: not a base URL"
        )));
    }
    url.path_segments_mut()
        .map_err(|_| Error::config(format!("invalid Azure endpoint {endpoint}")))?
        .pop_if_empty()
        .push(container);
    Ok(url)
}

/// The storage account of a container URL: the first DNS label of the host, or the first path
/// segment for `127.0.0.1`/`localhost` (emulators).
pub fn account_name(container_url: &Url) -> Result<String> {
    let host = container_url.host_str().unwrap_or_default();
    if host.starts_with("127.0.0.1") || host.starts_with("localhost") {
        let segments: Vec<&str> = container_url
            .path_segments()
            .map(|s| s.collect())
            .unwrap_or_default();
        // `/<account>/<container>`: the account is only there when both are.
        return match segments.as_slice() {
            [account, _, ..] if !account.is_empty() => Ok((*account).to_string()),
            _ => Err(Error::config(format!(
                "unable to determine storage account name from {container_url}"
            ))),
        };
    }
    match host.split('.').next() {
        Some(label) if !label.is_empty() => Ok(label.to_string()),
        _ => Err(Error::config(format!(
            "unable to determine storage account name from {container_url}"
        ))),
    }
}

/// Argo's test for a SAS token instead of an account key: a `?` or `&` followed by
/// `name=value` (the regular expression `(\?|&)([^=]+)=([^&]+)`).
pub fn is_sas(key: &str) -> bool {
    key.char_indices()
        .filter(|(_, c)| *c == '?' || *c == '&')
        .any(|(i, _)| {
            let rest = &key[i + 1..];
            rest.find('=')
                .is_some_and(|eq| eq > 0 && rest[eq + 1..].chars().next().is_some_and(|c| c != '&'))
        })
}

/// The variables `useSDKCreds` picks its Entra ID credential from, read once by the caller
/// (the environment in a pod): `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
/// `AZURE_FEDERATED_TOKEN_FILE`. The workload and managed identity credentials of the Azure
/// SDK read their own further variables themselves.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AzureSdkEnv {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub federated_token_file: Option<String>,
}

impl AzureSdkEnv {
    /// The variables through `get`; blank values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        Self {
            tenant_id: var("AZURE_TENANT_ID"),
            client_id: var("AZURE_CLIENT_ID"),
            client_secret: var("AZURE_CLIENT_SECRET"),
            federated_token_file: var("AZURE_FEDERATED_TOKEN_FILE"),
        }
    }
}

/// Says which variables are set, never the client secret.
impl std::fmt::Debug for AzureSdkEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSdkEnv")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<set>"),
            )
            .field("federated_token_file", &self.federated_token_file)
            .finish()
    }
}

/// Entra ID credentials for `useSDKCreds`, picked from `env` the way
/// `DefaultAzureCredential` would find them (the official Rust crate has no such chain):
/// a client secret (tenant, client id and secret), else AKS workload identity (a federated
/// token file), else the managed identity (user-assigned when a client id is set).
fn sdk_credential(env: &AzureSdkEnv) -> Result<Arc<dyn TokenCredential>> {
    let failed = |e: azure_core::Error| {
        Error::config(format!("unable to create default Azure credential: {e}"))
    };
    if let (Some(tenant), Some(client), Some(secret)) = (
        env.tenant_id.clone(),
        env.client_id.clone(),
        env.client_secret.clone(),
    ) {
        let c = azure_identity::ClientSecretCredential::new(&tenant, client, secret.into(), None)
            .map_err(failed)?;
        return Ok(c);
    }
    if env.federated_token_file.is_some() {
        let c = azure_identity::WorkloadIdentityCredential::new(None).map_err(failed)?;
        return Ok(c);
    }
    let options =
        env.client_id
            .clone()
            .map(|id| azure_identity::ManagedIdentityCredentialOptions {
                user_assigned_id: Some(azure_identity::UserAssignedId::ClientId(id)),
                ..Default::default()
            });
    let c = azure_identity::ManagedIdentityCredential::new(options).map_err(failed)?;
    Ok(c)
}

fn auth(loc: &AzureArtifact, secrets: &Secrets, url: &Url, sdk_env: &AzureSdkEnv) -> Result<Auth> {
    if loc.use_sdk_creds {
        return sdk_credential(sdk_env).map(Auth::Token);
    }
    let key = secrets
        .read_opt(loc.account_key_secret.as_ref())?
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            Error::config(
                "accountKey secret is required for Azure Blob Storage if useSDKCreds is false",
            )
        })?;
    let value = key.expose().trim();
    if is_sas(value) {
        return Ok(Auth::Sas(value.trim_start_matches('?').to_string()));
    }
    let account = account_name(url)?;
    sas::container_sas(&account, &loc.container, value, chrono::Utc::now())
        .map(Auth::Sas)
        .map_err(|e| e.context(format!("the account key in {key}")))
}

/// The container client for a location. Retries are disabled in the client: each call is
/// retried alone by [`crate::storage::retry`].
pub fn container_client(
    loc: &AzureArtifact,
    secrets: &Secrets,
    settings: &StorageConfig,
) -> Result<BlobContainerClient> {
    if loc.container.is_empty() {
        return Err(Error::config("the Azure location has no container"));
    }
    let mut url = container_url(&loc.endpoint, &loc.container)?;
    let credential = match auth(loc, secrets, &url, &settings.azure.sdk_credentials)? {
        Auth::Sas(query) => {
            url.set_query(Some(&query));
            None
        }
        Auth::Token(c) => Some(c),
    };
    let timeouts = settings.timeouts.over(Timeouts::OBJECT_STORE);
    // The SDK's own client has fixed timeouts; ours follows the configuration.
    let http = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.read)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::config(format!("cannot build the Azure HTTP client: {e}")))?;
    let options = BlobContainerClientOptions {
        client_options: ClientOptions {
            retry: RetryOptions::none(),
            transport: Some(Transport::new(Arc::new(http))),
            ..Default::default()
        },
        ..Default::default()
    };
    BlobContainerClient::new(url, credential, Some(options))
        .map_err(|e| Error::config(format!("unable to create Azure Blob Container client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_follow_argo() {
        let url = container_url("https://myacct.blob.core.windows.net", "ctr").expect("url");
        assert_eq!(url.as_str(), "https://myacct.blob.core.windows.net/ctr");
        assert_eq!(account_name(&url).expect("account"), "myacct");

        let url = container_url("http://127.0.0.1:10000/devstoreaccount1/", "ctr").expect("url");
        assert_eq!(url.as_str(), "http://127.0.0.1:10000/devstoreaccount1/ctr");
        assert_eq!(account_name(&url).expect("account"), "devstoreaccount1");

        let url = container_url("http://localhost:10000", "ctr").expect("url");
        assert!(account_name(&url).is_err());
        assert!(container_url("not a url", "ctr").is_err());
    }

    #[test]
    fn sdk_credentials_need_https_and_keys_are_required_otherwise() {
        let secrets = Secrets::default();
        let loc = AzureArtifact {
            endpoint: "http://127.0.0.1:10000/devstoreaccount1".into(),
            container: "ctr".into(),
            use_sdk_creds: true,
            blob: "b".into(),
            ..Default::default()
        };
        let Err(e) = container_client(&loc, &secrets, &StorageConfig::default()) else {
            panic!("a token credential over http must be refused");
        };
        assert!(e.to_string().contains("must use https"), "{e}");
        let loc = AzureArtifact {
            use_sdk_creds: false,
            ..loc
        };
        let Err(e) = container_client(&loc, &secrets, &StorageConfig::default()) else {
            panic!("no key must be refused");
        };
        assert_eq!(
            e.to_string(),
            "accountKey secret is required for Azure Blob Storage if useSDKCreds is false"
        );
    }

    #[test]
    fn sas_detection_matches_argos_expression() {
        assert!(is_sas("?sv=2022-11-02&sig=abc"));
        assert!(is_sas("sv=2022-11-02&ss=b&sig=abc"));
        assert!(!is_sas(
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
        ));
        assert!(!is_sas("sv=only"));
        assert!(!is_sas("?=x"));
        assert!(!is_sas("?a=&b"));
    }
}
