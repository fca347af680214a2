//! `--cache-to` / `--cache-from` end to end with the real binary: export the cache to an OCI
//! layout, build on a fresh store from it (every step CACHED, same digest), and refuse an
//! unsupported cache type with a clear error.

use crate::support::{built_digest, steps, text, Env};

const DOCKERFILE: &str = "FROM busybox:test\n\
RUN busybox head -c 16 /dev/urandom > /r\n\
COPY a.txt /a.txt\n\
RUN cat /a.txt /r > /b\n";

#[test]
fn a_local_cache_makes_a_fresh_store_build_everything_from_cache() {
    let first = Env::new();
    first.import_busybox();
    let ctx = first.context("ctx", &[("Dockerfile", DOCKERFILE), ("a.txt", "alpha\n")]);
    let cache = first.path("cache");
    let cache_to = format!("type=local,dest={}", cache.display());
    let ctx_arg = ctx.display().to_string();
    let (_, stderr) = first.ok(&[
        "build",
        "--progress=plain",
        "--cache-to",
        &cache_to,
        &ctx_arg,
    ]);
    let digest = built_digest(&stderr);
    assert!(stderr.contains("exporting cache to"), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("exported cache to ") && l.contains("3 records")),
        "{stderr}"
    );
    assert!(cache.join("index.json").is_file());

    let second = Env::new();
    second.import_busybox();
    let cache_from = format!("type=local,src={}", cache.display());
    let (_, stderr) = second.ok(&[
        "build",
        "--progress=plain",
        "--cache-from",
        &cache_from,
        &ctx_arg,
    ]);
    assert_eq!(built_digest(&stderr), digest, "{stderr}");
    let build_steps: Vec<_> = steps(&stderr)
        .into_iter()
        .filter(|(_, header, _)| header.starts_with('['))
        .collect();
    assert_eq!(build_steps.len(), 4, "{stderr}");
    for (n, header, status) in &build_steps {
        assert_eq!(status, "CACHED", "#{n} {header}\n{stderr}");
    }
    assert!(stderr.contains("importing cache manifest from"), "{stderr}");
}

#[test]
fn an_unsupported_cache_type_is_a_clear_error() {
    let env = Env::new();
    env.import_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", DOCKERFILE), ("a.txt", "alpha\n")]);
    let ctx_arg = ctx.display().to_string();
    for (flag, value, want) in [
        (
            "--cache-to",
            "type=s3,bucket=b",
            "unsupported cache type `s3`",
        ),
        ("--cache-to", "type=local", "needs dest="),
        ("--cache-from", "type=local,dest=/x", "unknown key `dest`"),
    ] {
        let out = env.rbuild(&["build", flag, value, &ctx_arg]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(value) && stderr.contains(want),
            "{flag} {value}: {stderr}"
        );
    }
}
