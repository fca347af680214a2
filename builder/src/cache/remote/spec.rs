//! The values of `--cache-to` and `--cache-from`, parsed as buildx parses them
//! (`util/buildflags/cache.go`): comma-separated `key=value` fields with a `type`, or a bare
//! reference, which means `type=registry,ref=REF`.
//!
//! Supported: `type=registry,ref=REF[,mode=min|max][,ignore-error=true]` and
//! `type=local,dest=DIR[,tag=TAG][,mode=min|max][,ignore-error=true]` for exports;
//! `type=registry,ref=REF` and `type=local,src=DIR[,tag=TAG|,digest=sha256:…]` for imports.
//! `oci-mediatypes` and `image-manifest` are accepted (booleans) for buildx compatibility: the
//! cache is always an OCI image manifest. Any other type or key is an error naming it, as
//! BuildKit refuses an unknown cache exporter type.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rbuild_layers::digest::Digest;
use rbuild_layers::oci_layout::valid_tag;

use crate::registry::Reference;

/// The tag a local cache is written under and read from when none is given (as BuildKit).
pub const DEFAULT_LOCAL_TAG: &str = "latest";

/// Which records an export carries (BuildKit's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps that produced the exported image: the target and its parents (default).
    #[default]
    Min,
    /// Every step the build finished, in every stage.
    Max,
}

/// Where a cache is written to or read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// An artifact in a registry, under a tag.
    Registry {
        /// The reference (`REG/NAME:TAG`).
        reference: Reference,
    },
    /// An OCI image layout directory; the cache is its index entry named `tag`.
    Local {
        /// The layout directory (`dest=` for exports, `src=` for imports).
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the entry.
        tag: String,
        /// `digest=` (imports only): the cache manifest to read, whatever its tag.
        digest: Option<Digest>,
    },
}

impl fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheLocation::Registry { reference } => write!(f, "{reference}"),
            CacheLocation::Local {
                dir,
                digest: Some(d),
                ..
            } => write!(f, "{}@{d}", dir.display()),
            CacheLocation::Local { dir, tag, .. } => write!(f, "{} (tag {tag})", dir.display()),
        }
    }
}

/// One `--cache-from`: a cache to match steps against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheImport {
    /// Where the cache is.
    pub location: CacheLocation,
}

/// One `--cache-to`: where the build's cache records are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    /// Where the cache goes.
    pub location: CacheLocation,
    /// Which records go.
    pub mode: CacheMode,
    /// `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
}

/// A `--cache-to`/`--cache-from` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheSpecError {
    /// The value is empty.
    #[error("empty cache specification")]
    Empty,
    /// A field is not `key=value`.
    #[error("invalid field `{field}`: must be a key=value pair")]
    NotKeyValue {
        /// The field.
        field: String,
    },
    /// No `type=` was given.
    #[error("missing type= (registry or local)")]
    MissingType,
    /// The type is not one rbuild has.
    #[error("unsupported cache type `{kind}` (rbuild supports registry and local)")]
    UnknownType {
        /// The type given.
        kind: String,
    },
    /// A key the type does not take.
    #[error("unknown key `{key}` for a {kind} cache {direction}")]
    UnknownKey {
        /// The key.
        key: String,
        /// The cache type.
        kind: &'static str,
        /// `import` or `export`.
        direction: &'static str,
    },
    /// A required key is missing.
    #[error("a {kind} cache {direction} needs {key}=")]
    MissingKey {
        /// The key.
        key: &'static str,
        /// The cache type.
        kind: &'static str,
        /// `import` or `export`.
        direction: &'static str,
    },
    /// A value is not acceptable for its key.
    #[error("invalid value `{value}` for {key}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, CacheSpecError>;

/// The fields of a value: lowercased keys, in order; a bare reference becomes
/// `type=registry,ref=…`.
fn fields(value: &str) -> Result<Vec<(String, String)>> {
    let value = value.trim();
    if value.is_empty() {
        return Err(CacheSpecError::Empty);
    }
    if !value.contains('=') {
        return Ok(vec![
            ("type".to_string(), "registry".to_string()),
            ("ref".to_string(), value.to_string()),
        ]);
    }
    split_fields(value)
        .map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| (k, v.trim().to_string()))
                .collect()
        })
        .map_err(|field| CacheSpecError::NotKeyValue {
            field: field.to_string(),
        })
}

/// Split the comma-separated `key=value` fields of a flag value, as buildx's CSV reader does
/// for unquoted fields (`--cache-to`, `--output`, `--secret`): empty fields are skipped, keys
/// trimmed and lowercased, values kept as written. The error is the first field without `=`.
pub fn split_fields(value: &str) -> std::result::Result<Vec<(String, String)>, &str> {
    let mut out = Vec::new();
    for field in value.split(',') {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        match field.split_once('=') {
            Some((k, v)) => out.push((k.trim().to_ascii_lowercase(), v.to_string())),
            None => return Err(field),
        }
    }
    Ok(out)
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> CacheSpecError {
    CacheSpecError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad(key, value, "expected true or false")),
    }
}

fn parse_reference(key: &str, value: &str, export: bool) -> Result<Reference> {
    let reference: Reference = value.parse().map_err(|e| bad(key, value, format!("{e}")))?;
    if export && reference.digest().is_some() {
        return Err(bad(
            key,
            value,
            "a cache is exported under a tag, not a digest",
        ));
    }
    Ok(reference)
}

fn parse_tag(value: &str) -> Result<String> {
    if valid_tag(value) {
        Ok(value.to_string())
    } else {
        Err(bad("tag", value, "not a valid tag"))
    }
}

fn path(key: &str, value: &str) -> Result<PathBuf> {
    if value.is_empty() {
        return Err(bad(key, value, "empty path"));
    }
    Ok(PathBuf::from(value))
}

/// The type of a value: `registry` or `local`.
fn kind_of(fields: &[(String, String)]) -> Result<&'static str> {
    match fields.iter().rev().find(|(k, _)| k == "type") {
        None => Err(CacheSpecError::MissingType),
        Some((_, t)) => match t.as_str() {
            "registry" => Ok("registry"),
            "local" => Ok("local"),
            other => Err(CacheSpecError::UnknownType {
                kind: other.to_string(),
            }),
        },
    }
}

impl FromStr for CacheExport {
    type Err = CacheSpecError;

    fn from_str(value: &str) -> Result<Self> {
        let fields = fields(value)?;
        let kind = kind_of(&fields)?;
        let unknown = |key: &str| CacheSpecError::UnknownKey {
            key: key.to_string(),
            kind,
            direction: "export",
        };
        let mut reference = None;
        let mut dest = None;
        let mut tag = None;
        let mut mode = CacheMode::Min;
        let mut ignore_error = false;
        for (key, v) in &fields {
            match (kind, key.as_str()) {
                (_, "type") => {}
                ("registry", "ref") => reference = Some(parse_reference(key, v, true)?),
                ("local", "dest") => dest = Some(path(key, v)?),
                ("local", "tag") => tag = Some(parse_tag(v)?),
                (_, "mode") => {
                    mode = match v.as_str() {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        _ => return Err(bad(key, v, "expected min or max")),
                    }
                }
                (_, "ignore-error") => ignore_error = parse_bool(key, v)?,
                (_, "oci-mediatypes" | "image-manifest") => {
                    parse_bool(key, v)?;
                }
                _ => return Err(unknown(key)),
            }
        }
        let missing = |key: &'static str| CacheSpecError::MissingKey {
            key,
            kind,
            direction: "export",
        };
        let location = if kind == "registry" {
            CacheLocation::Registry {
                reference: reference.ok_or_else(|| missing("ref"))?,
            }
        } else {
            CacheLocation::Local {
                dir: dest.ok_or_else(|| missing("dest"))?,
                tag: tag.unwrap_or_else(|| DEFAULT_LOCAL_TAG.to_string()),
                digest: None,
            }
        };
        Ok(CacheExport {
            location,
            mode,
            ignore_error,
        })
    }
}

impl FromStr for CacheImport {
    type Err = CacheSpecError;

    fn from_str(value: &str) -> Result<Self> {
        let fields = fields(value)?;
        let kind = kind_of(&fields)?;
        let mut reference = None;
        let mut src = None;
        let mut tag = None;
        let mut digest = None;
        for (key, v) in &fields {
            match (kind, key.as_str()) {
                (_, "type") => {}
                ("registry", "ref") => reference = Some(parse_reference(key, v, false)?),
                ("local", "src") => src = Some(path(key, v)?),
                ("local", "tag") => tag = Some(parse_tag(v)?),
                ("local", "digest") => {
                    digest = Some(
                        v.parse::<Digest>()
                            .map_err(|e| bad(key, v, format!("{e}")))?,
                    )
                }
                _ => {
                    return Err(CacheSpecError::UnknownKey {
                        key: key.to_string(),
                        kind,
                        direction: "import",
                    })
                }
            }
        }
        let missing = |key: &'static str| CacheSpecError::MissingKey {
            key,
            kind,
            direction: "import",
        };
        let location = if kind == "registry" {
            CacheLocation::Registry {
                reference: reference.ok_or_else(|| missing("ref"))?,
            }
        } else {
            CacheLocation::Local {
                dir: src.ok_or_else(|| missing("src"))?,
                tag: tag.unwrap_or_else(|| DEFAULT_LOCAL_TAG.to_string()),
                digest,
            }
        };
        Ok(CacheImport { location })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(r: &str) -> CacheLocation {
        CacheLocation::Registry {
            reference: r.parse().expect("reference"),
        }
    }

    fn local(dir: &str, tag: &str) -> CacheLocation {
        CacheLocation::Local {
            dir: PathBuf::from(dir),
            tag: tag.to_string(),
            digest: None,
        }
    }

    #[test]
    fn exports_table() {
        let cases: Vec<(&str, CacheLocation, CacheMode, bool)> = vec![
            (
                "type=registry,ref=reg:5000/app:cache",
                registry("reg:5000/app:cache"),
                CacheMode::Min,
                false,
            ),
            (
                "type=registry,ref=reg:5000/app:cache,mode=max,ignore-error=true",
                registry("reg:5000/app:cache"),
                CacheMode::Max,
                true,
            ),
            (
                "reg:5000/app:cache",
                registry("reg:5000/app:cache"),
                CacheMode::Min,
                false,
            ),
            (
                "type=local,dest=/tmp/c",
                local("/tmp/c", "latest"),
                CacheMode::Min,
                false,
            ),
            (
                "type=local,dest=/tmp/c,tag=v2,mode=max,oci-mediatypes=true,image-manifest=true",
                local("/tmp/c", "v2"),
                CacheMode::Max,
                false,
            ),
            (
                " TYPE=local , Dest=c ",
                local("c", "latest"),
                CacheMode::Min,
                false,
            ),
        ];
        for (text, location, mode, ignore_error) in cases {
            let got: CacheExport = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                got,
                CacheExport {
                    location,
                    mode,
                    ignore_error
                },
                "{text}"
            );
        }
    }

    #[test]
    fn imports_table() {
        let d = Digest::of(b"x");
        let cases: Vec<(String, CacheLocation)> = vec![
            (
                "type=registry,ref=reg:5000/app:cache".into(),
                registry("reg:5000/app:cache"),
            ),
            ("reg:5000/app".into(), registry("reg:5000/app:latest")),
            ("type=local,src=/c".into(), local("/c", "latest")),
            ("type=local,src=/c,tag=main".into(), local("/c", "main")),
            (
                format!("type=local,src=/c,digest={d}"),
                CacheLocation::Local {
                    dir: "/c".into(),
                    tag: "latest".into(),
                    digest: Some(d.clone()),
                },
            ),
        ];
        for (text, location) in cases {
            let got: CacheImport = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, CacheImport { location }, "{text}");
        }
    }

    #[test]
    fn errors_name_the_offending_part() {
        let export_cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("type=s3,bucket=b", "unsupported cache type `s3`"),
            ("type=gha", "unsupported cache type `gha`"),
            ("ref=reg/app", "missing type="),
            ("type=registry", "needs ref="),
            ("type=local", "needs dest="),
            ("type=local,src=/c", "unknown key `src`"),
            ("type=registry,ref=a,compression=zstd", "unknown key `compression`"),
            ("type=registry,ref=a,mode=all", "invalid value `all` for mode"),
            ("type=registry,ref=a,ignore-error=maybe", "for ignore-error"),
            ("type=registry,ref=a,novalue", "invalid field `novalue`"),
            ("type=registry,ref=UPPER/Case", "for ref"),
            ("type=local,dest=d,tag=a/b", "for tag"),
            (
                "type=registry,ref=r/a@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "not a digest",
            ),
        ];
        for (text, want) in export_cases {
            let err = text.parse::<CacheExport>().expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let import_cases: &[(&str, &str)] = &[
            ("type=local,dest=/c", "unknown key `dest`"),
            ("type=local", "needs src="),
            ("type=registry,ref=a,mode=max", "unknown key `mode`"),
            ("type=local,src=/c,digest=md5:00", "for digest"),
            ("type=inline", "unsupported cache type `inline`"),
        ];
        for (text, want) in import_cases {
            let err = text.parse::<CacheImport>().expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn fields_split_as_buildx_csv() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        type Split = std::result::Result<Vec<(String, String)>, &'static str>;
        let cases: &[(&str, Split)] = &[
            (
                "Type=local, dest=/a b ,",
                Ok(vec![pair("type", "local"), pair("dest", "/a b")]),
            ),
            ("a= x,,b=y=z", Ok(vec![pair("a", " x"), pair("b", "y=z")])),
            ("a=1, nokey ,b=2", Err("nokey")),
            ("", Ok(vec![])),
        ];
        for (value, want) in cases {
            assert_eq!(&split_fields(value), want, "{value}");
        }
    }

    #[test]
    fn locations_display() {
        assert_eq!(
            registry("reg:5000/app:cache").to_string(),
            "reg:5000/app:cache"
        );
        assert_eq!(local("/c", "v1").to_string(), "/c (tag v1)");
    }
}
