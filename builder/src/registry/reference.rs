//! Image references as Docker parses them (`reference.ParseNormalizedNamed`): `alpine` is
//! `docker.io/library/alpine:latest`; a first component with a `.` or `:` or equal to
//! `localhost` is a registry host (ports allowed); a tag follows `:`, a digest follows `@`, and
//! `name:tag@sha256:…` keeps both (the digest wins when fetching, as in Docker). The name part is
//! validated by [`ImageName`]; this module adds digests and the registry host mapping
//! (`docker.io` is served by `registry-1.docker.io`).

use std::fmt;
use std::str::FromStr;

use rbuild_layers::digest::Digest;
use rbuild_layers::oci_layout::ImageName;

use super::error::RegistryError;

/// The registry Docker Hub names resolve to.
pub const DOCKER_HUB_DOMAIN: &str = "docker.io";
/// The host that serves the Docker Hub registry API.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// A fully normalized image reference: registry, repository, and a tag and/or a digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    name: ImageName,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// A reference to `digest` in the same repository (drops the tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            name: self.name.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The registry as named (`docker.io`, `127.0.0.1:5000`).
    pub fn domain(&self) -> &str {
        self.name.domain()
    }

    /// The host the API is served from (`registry-1.docker.io` for `docker.io`).
    pub fn registry_host(&self) -> &str {
        registry_host(self.name.domain())
    }

    /// The repository path (`library/alpine`).
    pub fn repository(&self) -> &str {
        self.name.path()
    }

    /// The tag, when one was given or implied (`latest` when there is no digest either).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What goes after `/manifests/`: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The name with tag as the local store names images (`docker.io/library/alpine:3`).
    pub fn image_name(&self) -> &ImageName {
        &self.name
    }
}

/// The host serving the API of registry `domain` (Docker Hub's alias mapped).
pub fn registry_host(domain: &str) -> &str {
    match domain {
        DOCKER_HUB_DOMAIN | "index.docker.io" => DOCKER_HUB_REGISTRY,
        other => other,
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name.domain(), self.name.path())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| RegistryError::BadReference {
            reference: s.to_string(),
            reason,
        };
        let (name_part, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest: Digest = d.parse().map_err(|e| bad(format!("bad digest: {e}")))?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        if name_part.is_empty() {
            return Err(bad("empty repository name".to_string()));
        }
        let has_tag = matches!(name_part.rsplit_once(':'), Some((_, t)) if !t.contains('/'));
        let name: ImageName = name_part.parse().map_err(|e| bad(format!("{e}")))?;
        let tag = (has_tag || digest.is_none()).then(|| name.tag().to_string());
        Ok(Reference { name, tag, digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_like_docker() {
        let d = format!("@{D}");
        // (text, domain, api host, repository, tag, pinned)
        type Case<'a> = (String, &'a str, &'a str, &'a str, Option<&'a str>, bool);
        let cases: Vec<Case> = vec![
            (
                "alpine".into(),
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                Some("latest"),
                false,
            ),
            (
                "alpine:3.20".into(),
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                Some("3.20"),
                false,
            ),
            (
                "user/app".into(),
                "docker.io",
                "registry-1.docker.io",
                "user/app",
                Some("latest"),
                false,
            ),
            (
                "localhost/app".into(),
                "localhost",
                "localhost",
                "app",
                Some("latest"),
                false,
            ),
            (
                "localhost:5000/a/b:v1".into(),
                "localhost:5000",
                "localhost:5000",
                "a/b",
                Some("v1"),
                false,
            ),
            (
                "127.0.0.1:5000/app".into(),
                "127.0.0.1:5000",
                "127.0.0.1:5000",
                "app",
                Some("latest"),
                false,
            ),
            (
                "ghcr.io/o/r:t".into(),
                "ghcr.io",
                "ghcr.io",
                "o/r",
                Some("t"),
                false,
            ),
            (
                format!("alpine{d}"),
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                None,
                true,
            ),
            (
                format!("alpine:3{d}"),
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                Some("3"),
                true,
            ),
            (
                format!("host:5000/app{d}"),
                "host:5000",
                "host:5000",
                "app",
                None,
                true,
            ),
        ];
        for (text, domain, host, repo, tag, pinned) in cases {
            let r: Reference = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.domain(), domain, "{text}");
            assert_eq!(r.registry_host(), host, "{text}");
            assert_eq!(r.repository(), repo, "{text}");
            assert_eq!(r.tag(), tag, "{text}");
            assert_eq!(r.digest().is_some(), pinned, "{text}");
            if pinned {
                assert_eq!(r.manifest_reference(), D);
            }
        }
    }

    #[test]
    fn rejects_bad_references() {
        for text in ["", "UPPER", "app@sha256:zz", "app@", "a:b c", "@sha256:00"] {
            assert!(text.parse::<Reference>().is_err(), "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "docker.io/library/alpine:latest",
            "h:1/a/b:v",
            &format!("h.io/a@{D}"),
        ] {
            let r: Reference = text.parse().expect("valid");
            assert_eq!(r.to_string(), text);
        }
    }
}
