//! The typed values of the flags that have a small syntax of their own, parsed the way buildx
//! parses them: `-o/--output type=…,dest=…` (`util/buildflags/export.go`), `--secret
//! id=…,src=…|env=…` (`util/buildflags/secrets.go`), `--build-context NAME=VALUE`, `--ssh
//! default[=SOCKET]` and `KEY=VALUE` pairs. A value that does not parse is a usage error (exit
//! code 2), reported by clap with the flag's name.
//!
//! Deviations from buildx: `type=oci` writes a directory unless `tar=true` (buildx defaults to a
//! tar), `dest=-` (stdout) is not supported, and only `oci-layout://`, `docker-image://` and
//! directory build contexts exist (no git or https contexts).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rbuild::cache::remote::spec::split_fields;
use rbuild::solve::{NamedContext, Output};
use rbuild_layers::compress::Compression;
use rbuild_layers::oci_layout::ImageName;

/// `-o/--output`: one place an image is written to, besides the local store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// Where and in which format.
    pub output: Output,
    /// `compression=gzip|zstd|uncompressed`, when given.
    pub compression: Option<Compression>,
    /// `name=…`: extra image names written into the output (docker archive `RepoTags`, OCI
    /// index annotations).
    pub names: Vec<ImageName>,
}

/// A flag value that does not parse, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

fn err<T>(text: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(text.into()))
}

/// Split `a=b,c=d` into pairs ([`split_fields`]); a field without `=` is an error naming it.
fn fields(value: &str) -> Result<Vec<(String, String)>, SpecError> {
    split_fields(value)
        .map_err(|field| SpecError(format!("invalid field '{field}': must be a key=value pair")))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, SpecError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => err(format!(
            "invalid value '{value}' for {key}: expected true or false"
        )),
    }
}

impl FromStr for OutputSpec {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, SpecError> {
        if value == "-" {
            return err("writing an output to stdout is not supported; give type=…,dest=FILE");
        }
        // buildx: a value without `=` is a local directory.
        if !value.contains('=') {
            return Ok(OutputSpec {
                output: Output::Local {
                    dest: PathBuf::from(value),
                },
                compression: None,
                names: Vec::new(),
            });
        }
        let mut kind: Option<String> = None;
        let mut dest: Option<PathBuf> = None;
        let mut tar: Option<bool> = None;
        let mut compression = None;
        let mut names = Vec::new();
        for (key, v) in fields(value)? {
            match key.as_str() {
                "type" => kind = Some(v.to_ascii_lowercase()),
                "dest" => {
                    if v.is_empty() || v == "-" {
                        return err(format!("invalid dest '{v}': give a path"));
                    }
                    dest = Some(PathBuf::from(v));
                }
                "tar" => tar = Some(parse_bool("tar", &v)?),
                "compression" => match v.parse::<Compression>() {
                    Ok(c) => compression = Some(c),
                    Err(_) => {
                        return err(format!(
                            "invalid compression '{v}': expected gzip, zstd or uncompressed"
                        ))
                    }
                },
                "name" => match v.parse::<ImageName>() {
                    Ok(name) => names.push(name),
                    Err(e) => return err(format!("invalid name '{v}': {e}")),
                },
                other => return err(format!("unknown output attribute '{other}'")),
            }
        }
        let Some(kind) = kind else {
            return err("missing type= (oci, docker, local, tar or registry)");
        };
        if kind == "registry" {
            if dest.is_some() || tar.is_some() {
                return err("type=registry takes name=REF, not dest= or tar=");
            }
            return Ok(OutputSpec {
                output: Output::Registry {
                    names: names.iter().map(|n| n.to_string()).collect(),
                },
                compression,
                names: Vec::new(),
            });
        }
        let Some(dest) = dest else {
            return err(format!("type={kind} needs dest=PATH"));
        };
        if tar.is_some() && kind != "oci" {
            return err(format!("tar= applies to type=oci only, not type={kind}"));
        }
        let output = match kind.as_str() {
            "oci" => Output::Oci {
                dest,
                tar: tar.unwrap_or(false),
            },
            "docker" => Output::Docker { dest },
            "local" => Output::Local { dest },
            "tar" => Output::Tar { dest },
            other => {
                return err(format!(
                "unsupported output type '{other}': expected oci, docker, local, tar or registry"
            ))
            }
        };
        Ok(OutputSpec {
            output,
            compression,
            names,
        })
    }
}

/// Where a `--secret` value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=FILE` (or `type=file`).
    File(PathBuf),
    /// `env=VAR` (or `type=env`).
    Env(String),
    /// Only `id=` was given: the environment variable named like the id if it is set, else the
    /// file named like it (BuildKit's `secretsprovider.NewStore`).
    ById,
}

/// `--secret id=ID[,src=FILE|env=VAR]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// The id `RUN --mount=type=secret,id=…` refers to.
    pub id: String,
    /// Where its bytes come from.
    pub source: SecretSource,
}

impl FromStr for SecretSpec {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, SpecError> {
        let mut id = None;
        let mut kind: Option<String> = None;
        let mut src = None;
        let mut env = None;
        for (key, v) in fields(value)? {
            match key.as_str() {
                "id" => id = Some(v),
                "type" if v == "file" || v == "env" => kind = Some(v),
                "type" => {
                    return err(format!(
                        "unsupported secret type '{v}': expected file or env"
                    ))
                }
                "src" | "source" => src = Some(v),
                "env" => env = Some(v),
                other => return err(format!("unexpected key '{other}' in secret '{value}'")),
            }
        }
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            return err(format!("secret '{value}' is missing id="));
        };
        // buildx: `type=env,src=VAR` names the variable through src.
        if kind.as_deref() == Some("env") && env.is_none() {
            env = src.take();
        }
        let source = match (src, env) {
            (Some(_), Some(_)) => {
                return err(format!("secret '{id}' has both src= and env=; give one"))
            }
            (Some(file), None) => SecretSource::File(PathBuf::from(file)),
            (None, Some(var)) => SecretSource::Env(var),
            (None, None) if kind.as_deref() == Some("env") => SecretSource::Env(id.clone()),
            (None, None) => SecretSource::ById,
        };
        Ok(SecretSpec { id, source })
    }
}

/// `--build-context NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextSpec {
    /// The name a `FROM` or `COPY --from` uses.
    pub name: String,
    /// What it refers to.
    pub context: NamedContext,
}

impl FromStr for ContextSpec {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, SpecError> {
        let Some((name, target)) = value.split_once('=') else {
            return err(format!(
                "invalid build context '{value}': expected NAME=VALUE"
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return err(format!("invalid build context '{value}': empty name"));
        }
        if target.is_empty() {
            return err(format!("invalid build context '{value}': empty value"));
        }
        let context = if let Some(rest) = target.strip_prefix("oci-layout://") {
            parse_oci_layout(rest)?
        } else if let Some(reference) = target.strip_prefix("docker-image://") {
            if reference.is_empty() {
                return err(format!(
                    "invalid build context '{value}': empty image reference"
                ));
            }
            NamedContext::DockerImage(reference.to_string())
        } else if let Some((scheme, _)) = target.split_once("://") {
            return err(format!(
                "unsupported build context '{scheme}://': expected oci-layout://, docker-image:// or a directory"
            ));
        } else {
            NamedContext::Dir(PathBuf::from(target))
        };
        Ok(ContextSpec {
            name: name.to_string(),
            context,
        })
    }
}

/// `DIR`, `DIR:TAG` or `DIR@sha256:…`; the reference is the tag or the digest (without `@`).
fn parse_oci_layout(rest: &str) -> Result<NamedContext, SpecError> {
    let (dir, reference) = if let Some((dir, digest)) = rest.rsplit_once('@') {
        if !digest.starts_with("sha256:") {
            return err(format!("invalid digest '{digest}' in oci-layout://{rest}"));
        }
        (dir, Some(digest.to_string()))
    } else {
        match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') && !tag.is_empty() => {
                (dir, Some(tag.to_string()))
            }
            _ => (rest, None),
        }
    };
    if dir.is_empty() {
        return err(format!("oci-layout://{rest} names no directory"));
    }
    Ok(NamedContext::OciLayout {
        dir: PathBuf::from(dir),
        reference,
    })
}

/// `--ssh default[=SOCKET]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    /// The agent socket; `None` = `$SSH_AUTH_SOCK`.
    pub socket: Option<PathBuf>,
}

impl FromStr for SshSpec {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, SpecError> {
        let (id, socket) = match value.split_once('=') {
            Some((id, path)) => (id, Some(PathBuf::from(path))),
            None => (value, None),
        };
        if id != "default" {
            return err(format!(
                "ssh id '{id}' is not supported: only 'default' (one agent) is"
            ));
        }
        if socket.as_ref().is_some_and(|s| s.as_os_str().is_empty()) {
            return err("--ssh default= needs a socket path");
        }
        Ok(SshSpec { socket })
    }
}

/// `KEY=VALUE` (`--label`); a bare `KEY` means an empty value, as `docker build --label` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

impl FromStr for KeyValue {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, SpecError> {
        let (key, v) = value.split_once('=').unwrap_or((value, ""));
        if key.is_empty() {
            return err(format!("invalid '{value}': empty key"));
        }
        Ok(KeyValue {
            key: key.to_string(),
            value: v.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(dest: &str) -> PathBuf {
        PathBuf::from(dest)
    }

    #[test]
    fn outputs() {
        let cases: &[(&str, Output)] = &[
            (
                "type=oci,dest=o",
                Output::Oci {
                    dest: out("o"),
                    tar: false,
                },
            ),
            (
                "type=oci,dest=o.tar,tar=true",
                Output::Oci {
                    dest: out("o.tar"),
                    tar: true,
                },
            ),
            (
                "type=docker,dest=i.tar",
                Output::Docker { dest: out("i.tar") },
            ),
            ("type=local,dest=root", Output::Local { dest: out("root") }),
            ("Type=tar,dest=r.tar", Output::Tar { dest: out("r.tar") }),
            (
                "somedir",
                Output::Local {
                    dest: out("somedir"),
                },
            ),
            ("type=registry", Output::Registry { names: vec![] }),
            (
                "type=registry,name=reg:5000/app:v1",
                Output::Registry {
                    names: vec!["reg:5000/app:v1".into()],
                },
            ),
        ];
        for (text, want) in cases {
            let got: OutputSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(&got.output, want, "{text}");
        }
        let spec: OutputSpec = "type=oci,dest=o,compression=zstd,name=a:v1,name=b"
            .parse()
            .expect("parses");
        assert_eq!(spec.compression, Some(Compression::Zstd));
        let names: Vec<String> = spec.names.iter().map(|n| n.familiar()).collect();
        assert_eq!(names, vec!["a:v1".to_string(), "b:latest".to_string()]);
    }

    #[test]
    fn bad_outputs_say_why() {
        let cases = [
            ("type=oci", "needs dest"),
            ("dest=x", "missing type"),
            ("type=image,dest=x", "unsupported output type 'image'"),
            (
                "type=docker,dest=x,tar=true",
                "tar= applies to type=oci only",
            ),
            ("type=oci,dest=x,tar=maybe", "invalid value 'maybe'"),
            (
                "type=oci,dest=x,color=red",
                "unknown output attribute 'color'",
            ),
            ("type=oci,dest=x,compression=lz4", "invalid compression"),
            ("type=oci,dest", "must be a key=value pair"),
            ("-", "stdout"),
            ("type=oci,dest=x,name=Bad", "invalid name 'Bad'"),
            ("type=registry,dest=x", "type=registry takes name=REF"),
        ];
        for (text, want) in cases {
            let e = text.parse::<OutputSpec>().expect_err(text);
            assert!(e.0.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn secrets() {
        let cases = [
            ("id=a,src=/f", SecretSource::File(out("/f"))),
            ("id=a,source=/f", SecretSource::File(out("/f"))),
            ("id=a,env=VAR", SecretSource::Env("VAR".into())),
            ("type=env,id=a,src=VAR", SecretSource::Env("VAR".into())),
            ("type=env,id=a", SecretSource::Env("a".into())),
            ("id=a", SecretSource::ById),
        ];
        for (text, want) in cases {
            let got: SecretSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got.id, "a", "{text}");
            assert_eq!(got.source, want, "{text}");
        }
        for bad in [
            "src=/f",
            "id=a,src=/f,env=X",
            "id=a,type=ssh",
            "id=a,mode=0400",
            "id",
        ] {
            assert!(bad.parse::<SecretSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn build_contexts() {
        let cases = [
            (
                "base=oci-layout:///l",
                NamedContext::OciLayout {
                    dir: out("/l"),
                    reference: None,
                },
            ),
            (
                "base=oci-layout://l:v1",
                NamedContext::OciLayout {
                    dir: out("l"),
                    reference: Some("v1".into()),
                },
            ),
            (
                "base=oci-layout:///a:b/l@sha256:abcd",
                NamedContext::OciLayout {
                    dir: out("/a:b/l"),
                    reference: Some("sha256:abcd".into()),
                },
            ),
            (
                "base=docker-image://busybox:1.36",
                NamedContext::DockerImage("busybox:1.36".into()),
            ),
            ("base=../src", NamedContext::Dir(out("../src"))),
        ];
        for (text, want) in cases {
            let got: ContextSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got.name, "base", "{text}");
            assert_eq!(got.context, want, "{text}");
        }
        for bad in [
            "base",
            "=dir",
            "base=",
            "base=https://example.com/x.tar",
            "base=oci-layout://",
            "base=oci-layout://l@md5:00",
            "base=docker-image://",
        ] {
            assert!(bad.parse::<ContextSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_and_labels() {
        assert_eq!("default".parse(), Ok(SshSpec { socket: None }));
        assert_eq!(
            "default=/run/agent.sock".parse(),
            Ok(SshSpec {
                socket: Some(out("/run/agent.sock"))
            })
        );
        assert!("github=/x".parse::<SshSpec>().is_err());
        assert!("default=".parse::<SshSpec>().is_err());
        let kv: KeyValue = "a=b=c".parse().expect("parses");
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("a", "b=c"));
        let kv: KeyValue = "flag".parse().expect("parses");
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("flag", ""));
        assert!("=v".parse::<KeyValue>().is_err());
    }
}
