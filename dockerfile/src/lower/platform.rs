//! Platforms (`os/arch[/variant]`) and the predefined platform ARGs, as BuildKit's
//! `dockerfile2llb/platform.go` and containerd's `platforms.Parse`/`Normalize`.
//!
//! Architecture aliases are normalised the containerd way (`x86_64` → `amd64`, `aarch64` →
//! `arm64`, `armhf` → `arm/v7`, `armel` → `arm/v6`, `i386` → `386`; `arm` alone means `arm/v7`;
//! `arm64/v8` is written `arm64`). The host platform comes from the compile-time target
//! (`std::env::consts`), never from the process environment.

use std::fmt;
use std::str::FromStr;

/// An OCI platform: operating system, CPU architecture and optional variant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Go-style architecture name, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v7`, when there is one.
    pub variant: Option<String>,
}

/// A platform string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: {reason}")]
pub struct PlatformError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Platform {
    /// A platform from its parts, normalised.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let (architecture, variant) = normalize_arch(
            &architecture.to_ascii_lowercase(),
            variant.map(str::to_ascii_lowercase),
        );
        Platform {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
        }
    }

    /// The platform this program was compiled for (`linux/amd64`, `linux/arm64`, …).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }
}

fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    let variant = variant.filter(|v| !v.is_empty());
    match arch {
        "i386" => ("386".into(), None),
        "x86_64" | "x86-64" | "amd64" => {
            let v = variant.filter(|v| v != "v1");
            ("amd64".into(), v)
        }
        "aarch64" | "arm64" => {
            let v = variant.filter(|v| v != "8" && v != "v8");
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => {
            let v = match variant.as_deref() {
                None | Some("7") | Some("v7") => "v7".to_string(),
                Some("5") | Some("v5") => "v5".to_string(),
                Some("6") | Some("v6") => "v6".to_string(),
                Some("8") | Some("v8") => "v8".to_string(),
                Some(other) => other.to_string(),
            };
            ("arm".into(), Some(v))
        }
        other => (other.to_string(), variant),
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(text: &str) -> Result<Platform, PlatformError> {
        let err = |reason| PlatformError {
            text: text.to_string(),
            reason,
        };
        let parts: Vec<&str> = text.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err("invalid platform component"));
        }
        if parts.iter().any(|p| {
            !p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        }) {
            return Err(err("invalid character in platform"));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            [one] if is_known_os(&one.to_ascii_lowercase()) => {
                let host = Platform::host();
                Ok(Platform::new(
                    one,
                    &host.architecture,
                    host.variant.as_deref(),
                ))
            }
            [one] => {
                let host = Platform::host();
                Ok(Platform::new(&host.os, one, None))
            }
            _ => Err(err("too many platform components")),
        }
    }
}

fn is_known_os(os: &str) -> bool {
    matches!(
        os,
        "linux"
            | "windows"
            | "darwin"
            | "freebsd"
            | "netbsd"
            | "openbsd"
            | "solaris"
            | "illumos"
            | "android"
            | "ios"
            | "aix"
            | "plan9"
            | "dragonfly"
            | "js"
            | "wasip1"
    )
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The predefined platform ARGs in BuildKit's order: BUILDPLATFORM, BUILDOS, BUILDARCH,
/// BUILDVARIANT, TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT.
pub fn platform_args(build: &Platform, target: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(8);
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parse_normalises() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AARCH64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/i386", "linux/386"),
            ("linux/riscv64", "linux/riscv64"),
            ("windows/amd64", "windows/amd64"),
        ];
        for (text, want) in cases {
            assert_eq!(
                text.parse::<Platform>().map(|p| p.to_string()).as_deref(),
                Ok(want),
                "{text}"
            );
        }
        for bad in ["", "linux/", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        assert_eq!("linux".parse::<Platform>(), Ok(Platform::host()));
    }

    #[test]
    fn host_is_go_named() {
        let host = Platform::host();
        assert_eq!(host.os, std::env::consts::OS);
        assert!(!host.architecture.contains('_'), "{host}");
    }

    #[test]
    fn platform_args_order_and_values() {
        let build: Platform = "linux/amd64".parse().expect("valid");
        let target: Platform = "linux/arm/v7".parse().expect("valid");
        let args = platform_args(&build, &target);
        let names: Vec<&str> = args.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "BUILDPLATFORM",
                "BUILDOS",
                "BUILDARCH",
                "BUILDVARIANT",
                "TARGETPLATFORM",
                "TARGETOS",
                "TARGETARCH",
                "TARGETVARIANT"
            ]
        );
        assert_eq!(args[3].1, "");
        assert_eq!(args[4].1, "linux/arm/v7");
        assert_eq!(args[7].1, "v7");
    }
}
