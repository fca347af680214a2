//! Registry authentication as the Docker client does it (distribution `registry/client/auth`):
//! a request goes out anonymously (or with a cached `Authorization`); a `401` carries a
//! `WWW-Authenticate` challenge. `Basic realm=…` is answered with the user's credentials;
//! `Bearer realm=…,service=…,scope=…` sends us to the token endpoint (`GET realm?service=&scope=`,
//! with HTTP basic credentials when we have some), whose JSON answer carries `token` or
//! `access_token`. Tokens are cached per registry and scope for the client's lifetime (we do not
//! track `expires_in`: a stale token simply yields a new 401 and a fresh token).

use std::collections::BTreeMap;

use base64::Engine;

use super::credentials::Credentials;

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic authentication.
    Basic,
    /// The bearer-token flow.
    Bearer {
        /// The token endpoint URL.
        realm: String,
        /// The `service` parameter, if given.
        service: Option<String>,
        /// The `scope` the registry asks for, if given.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parse a header value (`Bearer realm="https://auth",service="reg",scope="repository:a:pull"`).
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            }),
            _ => None,
        }
    }
}

/// `key="quoted, value",key2=bare` → map (keys lowercased).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

/// The scope string for `actions` on a repository (`repository:library/alpine:pull,push`).
pub fn repository_scope(repository: &str, actions: &[&str]) -> String {
    format!("repository:{repository}:{}", actions.join(","))
}

/// The `Authorization` value for HTTP basic credentials.
pub fn basic_header(creds: &Credentials) -> String {
    let raw = format!("{}:{}", creds.username, creds.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Percent-encode a query parameter value (RFC 3986 unreserved characters stay).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token endpoint's answer.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

impl TokenResponse {
    /// `token`, else `access_token` (Docker accepts either).
    pub(crate) fn into_token(self) -> Option<String> {
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let bearer = |realm: &str, service: Option<&str>, scope: Option<&str>| Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
        };
        let cases: Vec<(&str, Option<Challenge>)> = vec![
            (r#"Basic realm="Registry Realm""#, Some(Challenge::Basic)),
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                Some(bearer(
                    "https://auth.docker.io/token",
                    Some("registry.docker.io"),
                    Some("repository:library/alpine:pull"),
                )),
            ),
            (
                r#"Bearer realm="http://127.0.0.1:1/token",scope="repository:a:pull,push""#,
                Some(bearer(
                    "http://127.0.0.1:1/token",
                    None,
                    Some("repository:a:pull,push"),
                )),
            ),
            (
                r#"bearer realm=http://x/t, service=s"#,
                Some(bearer("http://x/t", Some("s"), None)),
            ),
            (r#"Bearer service="s""#, None),
            ("Negotiate", None),
        ];
        for (header, want) in cases {
            assert_eq!(Challenge::parse(header), want, "{header}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(
            repository_scope("a/b", &["pull", "push"]),
            "repository:a/b:pull,push"
        );
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        let c = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(basic_header(&c), "Basic dTpw");
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"x"}"#).expect("json");
        assert_eq!(t.into_token().as_deref(), Some("x"));
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"","access_token":"y"}"#).expect("json");
        assert_eq!(t.into_token().as_deref(), Some("y"));
    }
}
