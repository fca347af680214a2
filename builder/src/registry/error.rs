//! Errors of the registry client: every variant names the registry and repository it concerns,
//! and HTTP failures keep the status and the registry's own error JSON (`errors[].code/message`,
//! as the distribution spec defines it).

use std::fmt;
use std::path::PathBuf;

use rbuild_layers::digest::Digest;
use rbuild_layers::store::StoreError;

/// One entry of a registry error body (`{"errors":[{"code":…,"message":…}]}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RegistryErrorEntry {
    /// `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `UNAUTHORIZED`, `DENIED`, …
    #[serde(default)]
    pub code: String,
    /// The human message.
    #[serde(default)]
    pub message: String,
}

/// The registry error entries of one response, shown as `CODE: message; …`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryErrors(pub Vec<RegistryErrorEntry>);

impl RegistryErrors {
    /// Parse a response body; anything that is not the spec's error JSON gives no entries.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            errors: Vec<RegistryErrorEntry>,
        }
        RegistryErrors(
            serde_json::from_slice::<Body>(body)
                .map(|b| b.errors)
                .unwrap_or_default(),
        )
    }
}

impl fmt::Display for RegistryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no error details");
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.code.to_ascii_lowercase(), e.message)?;
        }
        Ok(())
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// An image reference does not parse as Docker parses references.
    #[error("invalid image reference `{reference}`: {reason}")]
    BadReference {
        /// The text given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry refused our credentials (or wants some and we have none).
    #[error(
        "unauthorized: authentication required for {registry}/{repository} (check `rbuild login {registry}` or ~/.docker/config.json){}",
        details_suffix(.errors)
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository path.
        repository: String,
        /// What the registry said.
        errors: RegistryErrors,
    },
    /// The manifest or blob does not exist.
    #[error("{what} {reference} not found in {registry}/{repository}{}", details_suffix(.errors))]
    NotFound {
        /// The registry host.
        registry: String,
        /// The repository path.
        repository: String,
        /// `manifest` or `blob`.
        what: &'static str,
        /// The tag or digest asked for.
        reference: String,
        /// What the registry said.
        errors: RegistryErrors,
    },
    /// Any other unexpected HTTP status.
    #[error("{method} {url} for {registry}/{repository}: http {status}: {errors}")]
    Http {
        /// The registry host.
        registry: String,
        /// The repository path.
        repository: String,
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said.
        errors: RegistryErrors,
    },
    /// The connection failed (refused, reset, timed out, truncated body, TLS).
    #[error("{method} {url} for {registry}: {source}")]
    Transport {
        /// The registry host.
        registry: String,
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// The underlying error (boxed: `ureq::Error` is large).
        source: Box<ureq::Error>,
    },
    /// Reading a response body failed midway.
    #[error("reading {what} {digest} from {registry}/{repository}: {source}")]
    Body {
        /// The registry host.
        registry: String,
        /// The repository path.
        repository: String,
        /// `blob` or `manifest`.
        what: &'static str,
        /// The digest being fetched.
        digest: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `WWW-Authenticate` challenge we cannot follow.
    #[error("registry {registry} sent an unusable authentication challenge `{header}`")]
    BadChallenge {
        /// The registry host.
        registry: String,
        /// The header value.
        header: String,
    },
    /// The token endpoint failed or answered without a token.
    #[error("token endpoint {realm} for {registry}/{repository}: {reason}")]
    Token {
        /// The registry host.
        registry: String,
        /// The repository path.
        repository: String,
        /// The token endpoint URL.
        realm: String,
        /// What went wrong.
        reason: String,
    },
    /// Fetched bytes do not hash to the digest they were asked by.
    #[error("{what} from {registry}/{repository} has digest {found}, expected {expected}")]
    DigestMismatch {
        /// The registry host.
        registry: String,
        /// The repository path.
        repository: String,
        /// `manifest`, `config` or `layer`.
        what: &'static str,
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes received.
        found: Digest,
    },
    /// A manifest is malformed or of a media type we cannot use.
    #[error("manifest {digest} of {registry}/{repository}: {reason}")]
    BadManifest {
        /// The registry host.
        registry: String,
        /// The repository path.
        repository: String,
        /// The manifest digest (or the tag when unknown).
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// No entry of an image index matches the wanted platform.
    #[error("no image for platform {platform} in {reference} (available: {available})")]
    NoMatchingPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform wanted.
        platform: String,
        /// The platforms the index offers.
        available: String,
    },
    /// A Docker config file cannot be read or parsed.
    #[error("docker config {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `docker-credential-*` helper failed.
    #[error("credential helper docker-credential-{helper} for {server}: {reason}")]
    CredentialHelper {
        /// The helper name (`pass`, `desktop`, …).
        helper: String,
        /// The server asked for.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The local blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The local image could not be read for a push.
    #[error("local image {digest}: {reason}")]
    LocalImage {
        /// The manifest digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
}

fn details_suffix(errors: &RegistryErrors) -> String {
    if errors.0.is_empty() {
        String::new()
    } else {
        format!(": {errors}")
    }
}

/// The registry module's result.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// True for failures worth retrying: 5xx and 429 answers, connection errors, bodies cut
    /// short (a body error, or a blob whose size check fails), as Docker's and containerd's retry loops do.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { status, .. } => *status >= 500 || *status == 429,
            RegistryError::Transport { source, .. } => !matches!(
                **source,
                ureq::Error::BadUri(_) | ureq::Error::InvalidProxyUrl | ureq::Error::Http(_)
            ),
            RegistryError::Body { .. } => true,
            RegistryError::Store(StoreError::SizeMismatch { .. }) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_parse_and_render() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
                "unauthorized: authentication required",
            ),
            (
                r#"{"errors":[{"code":"A","message":"x"},{"code":"B","message":"y"}]}"#,
                "a: x; b: y",
            ),
            ("not json", "no error details"),
            ("", "no error details"),
        ];
        for (body, want) in cases {
            assert_eq!(
                RegistryErrors::parse(body.as_bytes()).to_string(),
                *want,
                "{body}"
            );
        }
    }

    #[test]
    fn transient_failures() {
        let http = |status| RegistryError::Http {
            registry: "h".into(),
            repository: "r".into(),
            method: "GET".into(),
            url: "u".into(),
            status,
            errors: RegistryErrors::default(),
        };
        let d = Digest::of(b"x");
        let cases: Vec<(RegistryError, bool)> = vec![
            (http(500), true),
            (http(503), true),
            (http(429), true),
            (http(404), false),
            (http(400), false),
            (
                RegistryError::Store(StoreError::SizeMismatch {
                    digest: d.clone(),
                    expected: 2,
                    found: 1,
                }),
                true,
            ),
            (
                RegistryError::Body {
                    registry: "h".into(),
                    repository: "r".into(),
                    what: "blob",
                    digest: d.to_string(),
                    source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
                },
                true,
            ),
            (
                RegistryError::DigestMismatch {
                    registry: "h".into(),
                    repository: "r".into(),
                    what: "blob",
                    expected: d.clone(),
                    found: d,
                },
                false,
            ),
            (
                RegistryError::Unauthorized {
                    registry: "h".into(),
                    repository: "r".into(),
                    errors: RegistryErrors::default(),
                },
                false,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.is_transient(), want, "{e}");
        }
    }

    #[test]
    fn unauthorized_message_names_host_and_repo() {
        let e = RegistryError::Unauthorized {
            registry: "127.0.0.1:5000".into(),
            repository: "app".into(),
            errors: RegistryErrors::default(),
        };
        assert_eq!(
            e.to_string(),
            "unauthorized: authentication required for 127.0.0.1:5000/app (check `rbuild login 127.0.0.1:5000` or ~/.docker/config.json)"
        );
    }
}
