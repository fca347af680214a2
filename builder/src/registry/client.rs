//! [`RegistryClient`]: one connection pool, one credential source and one token cache, shared by
//! pulls and pushes (it is `Sync`; clone-free sharing across threads by reference). Every request
//! goes through [`RegistryClient::send`], which applies the auth flow of [`super::auth`].
//!
//! Plain HTTP is used for `localhost`, `127.0.0.0/8`, `::1` and the configured insecure hosts,
//! as Docker allows them by default. Deviation: Docker first tries HTTPS on such hosts and falls
//! back to HTTP; we go to HTTP directly (loopback registries rarely speak TLS).

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use ureq::http;

use super::auth::{basic_header, query_escape, Challenge, TokenResponse};
use super::credentials::CredentialsSource;
use super::error::{RegistryError, RegistryErrors, Result};
use super::reference::DOCKER_HUB_REGISTRY;
use super::retry::RetryPolicy;

/// Everything configurable about a [`RegistryClient`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Extra hosts (`host` or `host:port`) reached over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout for one read or write on a connection (a stalled transfer fails after it).
    pub io_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Where credentials come from.
    pub credentials: CredentialsSource,
    /// Layers downloaded or uploaded at once (Docker's default is 3 down, 5 up).
    pub max_concurrent_transfers: usize,
    /// Size of one PATCH of a chunked upload.
    pub chunk_size: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            user_agent: format!("rbuild/{}", env!("CARGO_PKG_VERSION")),
            credentials: CredentialsSource::Anonymous,
            max_concurrent_transfers: 3,
            chunk_size: 16 << 20,
        }
    }
}

/// A request to send: method, absolute URL, extra headers, body, and the token scope it needs.
#[derive(Debug, Clone)]
pub(crate) struct Call<'a> {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<&'a [u8]>,
    /// Space-separated token scopes (`repository:a:pull`).
    pub scope: String,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: &'static str, url: String, scope: String) -> Self {
        Call {
            method,
            url,
            headers: Vec::new(),
            body: None,
            scope,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(mut self, body: &'a [u8]) -> Self {
        self.body = Some(body);
        self
    }
}

/// Which registry and repository a call concerns (for auth and error messages).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Repo<'a> {
    /// The API host (`registry-1.docker.io`, `127.0.0.1:5000`).
    pub host: &'a str,
    /// The repository path.
    pub repository: &'a str,
}

/// A response: status, headers, body reader.
pub(crate) type Response = http::Response<ureq::Body>;

/// A client of the OCI distribution API; see the module docs.
pub struct RegistryClient {
    agent: ureq::Agent,
    options: RegistryOptions,
    /// `Authorization` values by (host, scope).
    auth: Mutex<BTreeMap<(String, String), String>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client with `options`.
    pub fn new(options: RegistryOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_per_read(Some(options.io_timeout))
            .timeout_per_write(Some(options.io_timeout))
            .user_agent(options.user_agent.as_str())
            // Blobs must arrive byte-exact for their digests: never ask for transparent gzip.
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .max_redirects(5)
            .build();
        RegistryClient {
            agent: config.new_agent(),
            options,
            auth: Mutex::new(BTreeMap::new()),
        }
    }

    /// The options this client was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// True when `host` is reached over plain HTTP (loopback or configured insecure).
    pub fn is_insecure(&self, host: &str) -> bool {
        if self
            .options
            .insecure_registries
            .iter()
            .any(|h| h == host || host.rsplit_once(':').is_some_and(|(name, _)| h == name))
        {
            return true;
        }
        let name = host_without_port(host);
        name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// `http://host` or `https://host`.
    pub fn base_url(&self, host: &str) -> String {
        let scheme = if self.is_insecure(host) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    /// `GET /v2/` and authenticate if asked to: checks the host speaks the registry API and the
    /// credentials work (what `rbuild login` will do).
    pub fn ping(&self, host: &str) -> Result<()> {
        let repo = Repo {
            host,
            repository: "",
        };
        let url = format!("{}/v2/", self.base_url(host));
        let mut resp = self.send(repo, &Call::new("GET", url.clone(), String::new()))?;
        expect_status(repo, "GET", &url, &mut resp, &[200])
    }

    /// Send `call`, answering a 401 challenge once (basic or bearer) and caching what worked.
    pub(crate) fn send(&self, repo: Repo<'_>, call: &Call<'_>) -> Result<Response> {
        let key = (repo.host.to_string(), call.scope.clone());
        let cached = self.lock_auth().get(&key).cloned();
        let mut resp = self.raw(repo, call, cached.as_deref())?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        let header = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let errors = RegistryErrors::parse(&read_small(&mut resp));
        let unauthorized = |errors: RegistryErrors| RegistryError::Unauthorized {
            registry: display_host(repo.host).to_string(),
            repository: repo.repository.to_string(),
            errors,
        };
        let challenge = Challenge::parse(&header).ok_or_else(|| {
            if header.is_empty() {
                unauthorized(errors.clone())
            } else {
                RegistryError::BadChallenge {
                    registry: repo.host.to_string(),
                    header: header.clone(),
                }
            }
        })?;
        let creds = self.options.credentials.lookup(display_host(repo.host))?;
        let authorization = match challenge {
            Challenge::Basic => match &creds {
                Some(c) => basic_header(c),
                None => return Err(unauthorized(errors)),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scopes = if call.scope.is_empty() {
                    scope.unwrap_or_default()
                } else {
                    call.scope.clone()
                };
                let token =
                    self.fetch_token(repo, &realm, service.as_deref(), &scopes, creds.as_ref())?;
                format!("Bearer {token}")
            }
        };
        if cached.as_deref() == Some(authorization.as_str()) {
            return Err(unauthorized(errors));
        }
        let mut resp = self.raw(repo, call, Some(&authorization))?;
        if resp.status().as_u16() == 401 {
            return Err(unauthorized(RegistryErrors::parse(&read_small(&mut resp))));
        }
        self.lock_auth().insert(key, authorization);
        Ok(resp)
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), String>> {
        // A poisoned cache only means another thread panicked mid-insert; the map is still valid.
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bearer flow: `GET realm?service=…&scope=…` with basic credentials if we have them.
    fn fetch_token(
        &self,
        repo: Repo<'_>,
        realm: &str,
        service: Option<&str>,
        scopes: &str,
        creds: Option<&super::credentials::Credentials>,
    ) -> Result<String> {
        let mut params = Vec::new();
        if let Some(s) = service {
            params.push(format!("service={}", query_escape(s)));
        }
        for s in scopes.split_whitespace() {
            params.push(format!("scope={}", query_escape(s)));
        }
        if let Some(c) = creds {
            params.push(format!("account={}", query_escape(&c.username)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = if params.is_empty() {
            realm.to_string()
        } else {
            format!("{realm}{sep}{}", params.join("&"))
        };
        let token_error = |reason: String| RegistryError::Token {
            registry: display_host(repo.host).to_string(),
            repository: repo.repository.to_string(),
            realm: realm.to_string(),
            reason,
        };
        let mut req = http::Request::builder().method("GET").uri(&url);
        if let Some(c) = creds {
            req = req.header("Authorization", basic_header(c));
        }
        let req = req
            .body(())
            .map_err(|e| token_error(format!("bad token url {url}: {e}")))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| token_error(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = read_small(&mut resp);
        match status {
            200 => {}
            401 | 403 => {
                return Err(RegistryError::Unauthorized {
                    registry: display_host(repo.host).to_string(),
                    repository: repo.repository.to_string(),
                    errors: RegistryErrors::parse(&body),
                })
            }
            other => {
                return Err(token_error(format!(
                    "http {other}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                )))
            }
        }
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| token_error("answer has no token".to_string()))
    }

    /// One HTTP exchange, no auth logic.
    fn raw(
        &self,
        repo: Repo<'_>,
        call: &Call<'_>,
        authorization: Option<&str>,
    ) -> Result<Response> {
        let transport = |source: ureq::Error| RegistryError::Transport {
            registry: repo.host.to_string(),
            method: call.method.to_string(),
            url: call.url.clone(),
            source: Box::new(source),
        };
        let mut req = http::Request::builder()
            .method(call.method)
            .uri(call.url.as_str());
        for (name, value) in &call.headers {
            req = req.header(*name, value.as_str());
        }
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        let resp = match call.body {
            Some(body) => req
                .header("Content-Length", body.len().to_string())
                .body(body)
                .map_err(|e| transport(ureq::Error::Http(e)))
                .and_then(|r| self.agent.run(r).map_err(transport)),
            None => {
                let needs_length = matches!(call.method, "PUT" | "POST" | "PATCH");
                if needs_length {
                    req = req.header("Content-Length", "0");
                }
                req.body(())
                    .map_err(|e| transport(ureq::Error::Http(e)))
                    .and_then(|r| self.agent.run(r).map_err(transport))
            }
        }?;
        Ok(resp)
    }
}

/// The host as users name it (`docker.io` for Docker Hub's API host), for messages and logins.
pub(crate) fn display_host(host: &str) -> &str {
    if host == DOCKER_HUB_REGISTRY {
        "docker.io"
    } else {
        host
    }
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Read at most 64 KiB of a (presumably small, e.g. error) body; errors give what was read.
pub(crate) fn read_small(resp: &mut Response) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(64 << 10)
        .read_to_end(&mut out);
    out
}

/// Turn any status not in `ok` into the matching error.
pub(crate) fn expect_status(
    repo: Repo<'_>,
    method: &str,
    url: &str,
    resp: &mut Response,
    ok: &[u16],
) -> Result<()> {
    let status = resp.status().as_u16();
    if ok.contains(&status) {
        return Ok(());
    }
    let errors = RegistryErrors::parse(&read_small(resp));
    Err(match status {
        401 | 403 => RegistryError::Unauthorized {
            registry: display_host(repo.host).to_string(),
            repository: repo.repository.to_string(),
            errors,
        },
        _ => RegistryError::Http {
            registry: display_host(repo.host).to_string(),
            repository: repo.repository.to_string(),
            method: method.to_string(),
            url: url.to_string(),
            status,
            errors,
        },
    })
}

/// A response header as text.
pub(crate) fn header<'r>(resp: &'r Response, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_hosts() {
        let client = RegistryClient::new(RegistryOptions {
            insecure_registries: vec!["reg.lan".into(), "other:5000".into()],
            ..RegistryOptions::default()
        });
        let cases = [
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("127.8.9.1", true),
            ("[::1]:5000", true),
            ("reg.lan:443", true),
            ("reg.lan", true),
            ("other:5000", true),
            ("other:5001", false),
            ("registry-1.docker.io", false),
            ("10.0.0.1:5000", false),
        ];
        for (host, want) in cases {
            assert_eq!(client.is_insecure(host), want, "{host}");
        }
        assert_eq!(client.base_url("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(client.base_url("ghcr.io"), "https://ghcr.io");
    }
}
