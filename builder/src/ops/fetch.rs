//! `ADD https://…`: fetching a URL into a scratch file, behind the [`Fetcher`] trait.
//!
//! Follows BuildKit's HTTP source (`source/http`): the body is streamed to a temporary file while
//! its sha256 is computed; the `Last-Modified` header, when present and valid, becomes the file's
//! mtime (otherwise the time of the download); a status outside 2xx is an error naming the URL and
//! status. The file name and mode (0600) are decided by the COPY planner, not here. Redirects are
//! followed (ureq's default limit). The library never reads proxy settings from the environment:
//! a caller that wants a proxy passes it to [`HttpFetcher::with_proxy`].

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rbuild_layers::digest::{Digest, Hasher};

/// A downloaded body, kept in a temporary file that is deleted when this value is dropped.
#[derive(Debug)]
pub struct Fetched {
    /// The body on disk.
    pub file: tempfile::TempPath,
    /// Its length in bytes.
    pub size: u64,
    /// Its sha256 digest.
    pub digest: Digest,
    /// Seconds since the epoch from `Last-Modified`, if the server sent a valid one.
    pub last_modified: Option<i64>,
}

/// Why a URL could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The request failed (connection, TLS, protocol, or a non-2xx status).
    #[error("fetch {url}: {message}")]
    Request {
        /// The URL.
        url: String,
        /// The HTTP client's complaint (includes the status for HTTP errors).
        message: String,
    },
    /// Writing the body to the scratch file failed.
    #[error("fetch {url}: {op}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No fetcher is available (the build has no network access for ADD).
    #[error("fetch {url}: remote sources are not available in this build")]
    Unavailable {
        /// The URL.
        url: String,
    },
}

/// Fetches `http(s)://` sources for ADD.
pub trait Fetcher: Send + Sync {
    /// Download `url` into a scratch file.
    fn fetch(&self, url: &str) -> Result<Fetched, FetchError>;
}

/// A [`Fetcher`] that refuses every URL (builds without network access, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFetcher;

impl Fetcher for NoFetcher {
    fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        Err(FetchError::Unavailable {
            url: url.to_string(),
        })
    }
}

/// The real [`Fetcher`]: blocking HTTP(S) with `ureq` (rustls, webpki roots).
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    agent: ureq::Agent,
    scratch: Option<PathBuf>,
}

impl Default for HttpFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpFetcher {
    /// A fetcher with no proxy, a 30 s connect timeout and scratch files in the system temp dir.
    pub fn new() -> Self {
        Self::build(None, None)
    }

    /// A fetcher going through the proxy at `proxy` (`http://host:port`); an invalid proxy URL is
    /// ignored (no proxy).
    pub fn with_proxy(proxy: &str) -> Self {
        Self::build(ureq::Proxy::new(proxy).ok(), None)
    }

    /// Put scratch files under `dir` (e.g. the store's root, to stay on its file system).
    pub fn with_scratch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch = Some(dir.into());
        self
    }

    fn build(proxy: Option<ureq::Proxy>, scratch: Option<PathBuf>) -> Self {
        let config = ureq::Agent::config_builder()
            .proxy(proxy)
            .timeout_connect(Some(Duration::from_secs(30)))
            .http_status_as_error(true)
            .build();
        HttpFetcher {
            agent: config.into(),
            scratch,
        }
    }
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let request_err = |e: ureq::Error| FetchError::Request {
            url: url.to_string(),
            message: e.to_string(),
        };
        let io_err = |op: &'static str| {
            move |source: io::Error| FetchError::Io {
                url: url.to_string(),
                op,
                source,
            }
        };
        let response = self.agent.get(url).call().map_err(request_err)?;
        let last_modified = response
            .headers()
            .get("last-modified")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        let mut body = response.into_body().into_reader();
        let temp = match &self.scratch {
            Some(dir) => tempfile::NamedTempFile::new_in(dir),
            None => tempfile::NamedTempFile::new(),
        }
        .map_err(io_err("create scratch file"))?;
        let (mut file, path) = temp.into_parts();
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read body")(e)),
            };
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io_err("write body"))?;
        }
        file.flush().map_err(io_err("write body"))?;
        let (digest, size) = hasher.finish();
        Ok(Fetched {
            file: path,
            size,
            digest,
            last_modified,
        })
    }
}

/// Parse an HTTP date (`Last-Modified`) into seconds since the epoch.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(text.trim()).ok()?;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    }
}

/// Seconds since the epoch now (the mtime BuildKit gives a download without `Last-Modified`).
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The file name BuildKit gives a URL source: the last segment of the URL path, or
/// `__unnamed__` when the path has none (`https://host/`).
pub fn url_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let cleaned = rbuild_dockerfile::ignore::go_clean(if path.is_empty() { "/" } else { path });
    match cleaned.rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names_follow_buildkit() {
        let cases = [
            ("https://example.com/a/b/file.tar.gz", "file.tar.gz"),
            ("https://example.com/a/b/", "b"),
            ("https://example.com/", "__unnamed__"),
            ("https://example.com", "__unnamed__"),
            ("http://h:8080/x.txt?token=1#frag", "x.txt"),
        ];
        for (url, want) in cases {
            assert_eq!(url_file_name(url), want, "{url}");
        }
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn no_fetcher_refuses() {
        assert!(matches!(
            NoFetcher.fetch("https://example.com/x"),
            Err(FetchError::Unavailable { .. })
        ));
    }
}
