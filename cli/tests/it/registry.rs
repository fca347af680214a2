//! `rbuild build --push`, `-o type=registry`, `rbuild push`, `rbuild login/logout` against a
//! real registry on 127.0.0.1 (the builder tests' harness), checked with skopeo.

use std::process::{Command, Output, Stdio};

use rbuild::registry::{Credentials, DockerConfig};

use crate::support::{built_digest, text, workspace, Env};

#[allow(dead_code)]
#[path = "../../../builder/tests/it/registry_support.rs"]
mod registry_support;

use registry_support::{seed, skopeo_copy_digest, AuthMode, Registry, PASSWORD, USER};

/// Run rbuild with this env's store and a private Docker config dir.
fn rbuild(env: &Env, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    cmd.args(args)
        .current_dir(workspace())
        .env("RBUILD_ROOT", env.root())
        .env("DOCKER_CONFIG", env.path("docker"))
        .env_remove("SOURCE_DATE_EPOCH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(input) = stdin {
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("rbuild starts");
        {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        return child.wait_with_output().expect("rbuild runs");
    }
    cmd.stdin(Stdio::null());
    cmd.output().expect("rbuild runs")
}

fn ok(env: &Env, args: &[&str], stdin: Option<&str>) -> (String, String) {
    let out = rbuild(env, args, stdin);
    assert_eq!(
        out.status.code(),
        Some(0),
        "rbuild {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

fn remote_digest(env: &Env, reference: &str, name: &str) -> String {
    remote_digest_as(env, reference, name, None)
}

/// [`remote_digest`] with skopeo logging in as `creds` (`user:password`).
fn remote_digest_as(env: &Env, reference: &str, name: &str, creds: Option<&str>) -> String {
    skopeo_copy_digest(&env.path(name), reference, creds)
}

#[test]
fn build_push_output_registry_and_push_agree_with_skopeo() {
    let registry = Registry::start(AuthMode::Plain);
    seed(&registry, None);
    let env = Env::new();
    let host = &registry.host;
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                &format!("FROM {host}/base:1\nCOPY a.txt /a.txt\n"),
            ),
            ("a.txt", "a\n"),
        ],
    );
    let ctx = ctx.to_str().expect("utf-8 path");
    let app = format!("{host}/app:v1");
    let (_, stderr) = ok(
        &env,
        &["build", "--progress", "plain", "--push", "-t", &app, ctx],
        None,
    );
    let digest = built_digest(&stderr);
    assert!(
        stderr.contains(&format!("load metadata for {host}/base:1")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("pushed {app}")), "{stderr}");
    assert_eq!(remote_digest(&env, &app, "pulled-app"), digest);

    // -o type=registry,name=… pushes the same manifest under another name.
    let other = format!("{host}/other:v2");
    ok(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            &format!("type=registry,name={other}"),
            ctx,
        ],
        None,
    );
    assert_eq!(remote_digest(&env, &other, "pulled-other"), digest);

    // rbuild push NAME DEST from the store.
    let third = format!("{host}/third:v3");
    let (stdout, _) = ok(&env, &["push", "-q", &app, &third], None);
    assert_eq!(stdout.trim(), digest);
    assert_eq!(remote_digest(&env, &third, "pulled-third"), digest);

    // --push without a name is a usage error.
    let out = rbuild(&env, &["build", "--push", ctx], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn login_then_push_and_wrong_password_is_unauthorized() {
    let registry = Registry::start(AuthMode::Basic);
    seed(&registry, Some((&registry.host, USER, PASSWORD)));
    let env = Env::new();
    let host = registry.host.clone();

    let out = rbuild(
        &env,
        &["login", &host, "-u", USER, "--password-stdin"],
        Some("wrong\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("unauthorized"),
        "{}",
        text(&out.stderr)
    );
    assert!(!env.path("docker").join("config.json").exists());

    ok(
        &env,
        &["login", &host, "-u", USER, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", &format!("FROM {host}/base:1\nENV A=1\n"))],
    );
    let app = format!("{host}/app:auth");
    let (_, stderr) = ok(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "--push",
            "-t",
            &app,
            ctx.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert!(stderr.contains(&format!("pushed {app}")), "{stderr}");

    let (_, stderr) = ok(&env, &["logout", &host], None);
    assert!(stderr.contains("removed login credentials"), "{stderr}");
    let out = rbuild(&env, &["push", &app], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("unauthorized"),
        "{}",
        text(&out.stderr)
    );
}

/// The Docker Hub flow for real: `rbuild build --push` against a registry with token auth
/// (the test's own ES256 token server), credentials from the Docker config; a wrong password
/// fails the build with exit code 1 and the registry named.
#[test]
fn token_auth_build_push_with_docker_config_and_wrong_password() {
    let registry = Registry::start(AuthMode::Token);
    seed(&registry, Some((&registry.host, USER, PASSWORD)));
    let env = Env::new();
    let host = registry.host.clone();
    let config = env.path("docker").join("config.json");
    let login = |password: &str| {
        let creds = Credentials {
            username: USER.into(),
            password: password.into(),
        };
        DockerConfig::save_login(&config, &host, &creds).expect("save login");
    };
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", &format!("FROM {host}/base:1\nENV A=1\n"))],
    );
    let ctx = ctx.to_str().expect("utf-8 path");
    let app = format!("{host}/private/app:tok");
    let build = ["build", "--progress", "plain", "--push", "-t", &app, ctx];

    login("wrong");
    let out = rbuild(&env, &build, None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unauthorized"), "{stderr}");
    assert!(stderr.contains(&format!("{host}/base")), "{stderr}");

    login(PASSWORD);
    let (_, stderr) = ok(&env, &build, None);
    assert!(stderr.contains(&format!("pushed {app}")), "{stderr}");
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(
        remote_digest_as(&env, &app, "pulled-tok", Some(&creds)),
        built_digest(&stderr)
    );
}
