//! From an Argo `http:` or `artifactory:` location and its mounted secrets to a client and the
//! credentials each request carries.
//!
//! Argo's rules, kept: basic auth is sent for `http:` only when both the username and the
//! password are non-empty, and always for `artifactory:`; a client certificate
//! (`clientCert`) replaces the OAuth2 client when both are configured, as Argo's driver
//! construction does; custom headers are added (not set), so a name may repeat.

use std::time::Duration;

use crate::model::{ArtifactoryArtifact, HttpArtifact, SecretKeySelector};
use crate::storage::secrets::Secret;
use crate::storage::timeouts::Timeouts;
use crate::storage::{Error, ErrorKind, Result, Secrets};

/// Basic-auth credentials.
#[derive(Debug, Clone)]
pub struct Basic {
    pub username: Secret,
    pub password: Secret,
}

/// OAuth2 client-credentials grant settings (`auth.oauth2`).
#[derive(Debug, Clone)]
pub struct OAuth2 {
    pub token_url: Secret,
    pub client_id: Secret,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    pub endpoint_params: Vec<(String, String)>,
}

/// Everything a request needs besides its URL.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The location's URL.
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub basic: Option<Basic>,
    pub oauth2: Option<OAuth2>,
    /// Client certificate and key, PEM (mutual TLS).
    pub identity: Option<(Secret, Secret)>,
    /// Buffer streamed saves in a temporary file first (`saveStreamViaFile`), so the upload
    /// has a length and can be re-sent on a redirect.
    pub save_via_file: bool,
}

fn parse_url(raw: &str) -> Result<url::Url> {
    if raw.is_empty() {
        return Err(Error::config("the location has no url"));
    }
    url::Url::parse(raw).map_err(|e| Error::config(format!("invalid url {raw:?}: {e}")))
}

fn read_pair(
    secrets: &Secrets,
    a: Option<&SecretKeySelector>,
    b: Option<&SecretKeySelector>,
) -> Result<Option<(Secret, Secret)>> {
    match (a.filter(|s| s.is_set()), b.filter(|s| s.is_set())) {
        (Some(a), Some(b)) => Ok(Some((secrets.read(a)?, secrets.read(b)?))),
        _ => Ok(None),
    }
}

impl Settings {
    /// An `http:` location.
    pub fn from_http(loc: &HttpArtifact, secrets: &Secrets) -> Result<Self> {
        let auth = loc.auth.clone().unwrap_or_default();
        let basic_auth = auth.basic_auth.unwrap_or_default();
        let username = secrets.read_opt(basic_auth.username_secret.as_ref())?;
        let password = secrets.read_opt(basic_auth.password_secret.as_ref())?;
        let basic = match (username, password) {
            (Some(u), Some(p)) if !u.expose().is_empty() && !p.expose().is_empty() => Some(Basic {
                username: u,
                password: p,
            }),
            _ => None,
        };
        let cert = auth.client_cert.unwrap_or_default();
        let identity = read_pair(
            secrets,
            cert.client_cert_secret.as_ref(),
            cert.client_key_secret.as_ref(),
        )?;
        let set = |s: &Option<SecretKeySelector>| s.clone().filter(SecretKeySelector::is_set);
        let oauth2 = match auth.oauth2.filter(|_| identity.is_none()) {
            Some(o) => match (
                set(&o.token_url_secret),
                set(&o.client_id_secret),
                set(&o.client_secret_secret),
            ) {
                (Some(url), Some(id), Some(secret)) => Some(OAuth2 {
                    token_url: secrets.read(&url)?,
                    client_id: secrets.read(&id)?,
                    client_secret: secrets.read(&secret)?,
                    scopes: o.scopes,
                    endpoint_params: o
                        .endpoint_params
                        .into_iter()
                        .map(|p| (p.key, p.value))
                        .collect(),
                }),
                _ => None,
            },
            None => None,
        };
        Ok(Self {
            url: parse_url(&loc.url)?,
            headers: loc
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            basic,
            oauth2,
            identity,
            save_via_file: loc.save_stream_via_file,
        })
    }

    /// An `artifactory:` location: basic auth with both secrets, always.
    pub fn from_artifactory(loc: &ArtifactoryArtifact, secrets: &Secrets) -> Result<Self> {
        let need = |s: Option<&SecretKeySelector>, what: &str| {
            s.filter(|s| s.is_set())
                .ok_or_else(|| Error::config(format!("the artifactory location has no {what}")))
                .and_then(|s| secrets.read(s))
        };
        Ok(Self {
            url: parse_url(&loc.url)?,
            headers: Vec::new(),
            basic: Some(Basic {
                username: need(loc.username_secret.as_ref(), "usernameSecret")?,
                password: need(loc.password_secret.as_ref(), "passwordSecret")?,
            }),
            oauth2: None,
            identity: None,
            save_via_file: false,
        })
    }

    /// The HTTP client: `timeouts`, rustls with the platform's roots (`SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` are honoured), the client certificate when one is configured, Argo's
    /// redirect limit.
    pub fn client(&self, timeouts: Timeouts) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("argoexec-rs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .redirect(reqwest::redirect::Policy::limited(super::MAX_REDIRECTS));
        if let Some((cert, key)) = &self.identity {
            let mut pem = key.expose().as_bytes().to_vec();
            pem.push(b'\n');
            pem.extend_from_slice(cert.expose().as_bytes());
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::config(format!(
                    "the client certificate or key ({cert}, {key}) is not valid PEM: {e}"
                ))
            })?;
            builder = builder.identity(identity);
        }
        builder
            .build()
            .map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))
    }
}

/// A bearer token from an OAuth2 client-credentials grant, fetched on first use and again
/// shortly before it expires (as Go's `clientcredentials` token source does).
#[derive(Debug)]
pub struct TokenSource {
    settings: OAuth2,
    cached: tokio::sync::Mutex<Option<Token>>,
}

#[derive(Clone)]
struct Token {
    /// `Authorization` header value (`Bearer <token>`). Never printed.
    header: String,
    expires: Option<std::time::Instant>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("header", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// The token endpoint's JSON answer (RFC 6749 section 5.1).
#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Refresh a token this long before its announced expiry.
const EXPIRY_LEEWAY: Duration = Duration::from_secs(10);

impl TokenSource {
    pub fn new(settings: OAuth2) -> Self {
        Self {
            settings,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The `Authorization` header value to send (a credential: do not print it).
    pub async fn header(&self, client: &reqwest::Client) -> Result<String> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref()
            && t.expires.is_none_or(|e| std::time::Instant::now() < e)
        {
            return Ok(t.header.clone());
        }
        let token = self.fetch(client).await?;
        let header = token.header.clone();
        *cached = Some(token);
        Ok(header)
    }

    /// Asks the token endpoint. Like Go's auto-detected auth style, the client credentials go
    /// in a basic-auth header first and, if the endpoint refuses that, in the form body.
    async fn fetch(&self, client: &reqwest::Client) -> Result<Token> {
        let s = &self.settings;
        let url = s.token_url.expose().trim();
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        let scope = s.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        for (k, v) in &s.endpoint_params {
            form.push((k, v));
        }
        let mut last_status = None;
        for credentials_in_body in [false, true] {
            let mut req = client.post(url);
            let mut body = form.clone();
            if credentials_in_body {
                body.push(("client_id", s.client_id.expose()));
                body.push(("client_secret", s.client_secret.expose()));
            } else {
                req = req.basic_auth(
                    form_encode(s.client_id.expose()),
                    Some(form_encode(s.client_secret.expose())),
                );
            }
            let res = req.form(&body).send().await.map_err(|e| {
                Error::backend(
                    "http",
                    crate::storage::classify_reqwest(&e),
                    format!(
                        "cannot fetch an OAuth2 token from the tokenURLSecret endpoint: {}",
                        crate::storage::cause_chain(&e)
                    ),
                )
            })?;
            let status = res.status();
            if status.is_success() {
                let body: TokenResponse = res.json().await.map_err(|e| {
                    Error::backend(
                        "http",
                        ErrorKind::Auth,
                        format!("the OAuth2 token endpoint answered no usable token: {e}"),
                    )
                })?;
                return Ok(Token {
                    header: format!("{} {}", token_type(&body.token_type), body.access_token),
                    expires: body.expires_in.map(|s| {
                        std::time::Instant::now()
                            + Duration::from_secs(s).saturating_sub(EXPIRY_LEEWAY)
                    }),
                });
            }
            last_status = Some(status);
            if !matches!(status.as_u16(), 400 | 401) {
                break;
            }
        }
        let status = last_status.map(|s| s.to_string()).unwrap_or_default();
        Err(Error::backend(
            "http",
            last_status.map_or(ErrorKind::Auth, |s| ErrorKind::from_http_status(s.as_u16())),
            format!("oauth2: cannot fetch token: {status}"),
        ))
    }
}

/// `application/x-www-form-urlencoded` encoding, as RFC 6749 section 2.3.1 asks of client
/// credentials sent in a basic-auth header.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Go's `Token.Type()`: the canonical spelling of the usual types, `Bearer` when absent.
fn token_type(raw: &str) -> &str {
    match raw.to_ascii_lowercase().as_str() {
        "" | "bearer" => "Bearer",
        "mac" => "MAC",
        "basic" => "Basic",
        _ => raw,
    }
}
