//! The build flags that reach into the build: named contexts, secrets, the runtime, the target,
//! `--no-cache`.

use crate::support::{steps, text, Env};

#[test]
fn build_contexts_secrets_and_runc_runtime() {
    let env = Env::new();
    let layout = env.path("layout");
    rbuild_test_support::busybox_layout(&layout).expect("busybox layout");
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM base AS first\n\
                 RUN --mount=type=secret,id=tok cat /run/secrets/tok > /tok-copy\n\
                 FROM scratch AS files\n\
                 COPY --from=extra f.txt /f.txt\n\
                 FROM first\n\
                 COPY --from=files /f.txt /f.txt\n\
                 RUN cat /f.txt /tok-copy\n",
            ),
            ("extra/f.txt", "from-a-dir\n"),
        ],
    );
    let secret = env.path("tok.txt");
    std::fs::write(&secret, "s3cret").expect("write secret");
    let base = format!("base=oci-layout://{}:test", layout.display());
    let extra = format!("extra={}", ctx.join("extra").display());
    let tok = format!("id=tok,src={}", secret.display());
    let ctx = ctx.display().to_string();
    let args = [
        "build",
        "--progress",
        "plain",
        "--build-context",
        &base,
        "--build-context",
        &extra,
        "--secret",
        &tok,
        "--runtime",
        "runc",
        "-t",
        "combo:1",
        &ctx,
    ];
    let (_, err) = env.ok(&args);
    assert!(err.contains(" from-a-dir"), "{err}");
    assert!(err.contains(" s3cret"), "the RUN saw the secret:\n{err}");

    // The secret is not in the image config or history.
    let (inspect, _) = env.ok(&["inspect", "combo:1"]);
    assert!(!inspect.contains("s3cret"), "{inspect}");

    // --no-cache runs every step again.
    let mut again = args.to_vec();
    again.insert(1, "--no-cache");
    let (_, err) = env.ok(&again);
    let runs: Vec<_> = steps(&err)
        .into_iter()
        .filter(|(_, h, _)| h.contains("RUN "))
        .collect();
    assert_eq!(runs.len(), 2, "{err}");
    assert!(runs.iter().all(|(_, _, s)| s.starts_with("DONE")), "{err}");
}

#[test]
fn target_picks_the_stage() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM scratch AS one\nLABEL stage=one\nFROM scratch AS two\nLABEL stage=two\n",
        )],
    );
    let ctx = ctx.display().to_string();
    env.ok(&[
        "--target",
        "one",
        "-t",
        "t:one",
        "--progress",
        "quiet",
        &ctx,
    ]);
    let (inspect, _) = env.ok(&["inspect", "t:one"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    assert_eq!(v["config"]["config"]["Labels"]["stage"], "one");

    let out = env.rbuild(&["--target", "three", &ctx]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"three\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ssh_agent_socket_and_network_none() {
    let env = Env::new();
    env.import_busybox();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox:test\nRUN --mount=type=ssh test -S $SSH_AUTH_SOCK && echo agent-ok\n",
        )],
    );
    // A listening socket stands in for the agent: the RUN only checks that it is there.
    let sock = env.path("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&sock).expect("agent socket");
    let ssh = format!("default={}", sock.display());
    let (_, err) = env.ok(&[
        "--progress",
        "plain",
        "--ssh",
        &ssh,
        "--network",
        "none",
        &ctx.display().to_string(),
    ]);
    assert!(err.contains(" agent-ok"), "{err}");

    // `--ssh default` without $SSH_AUTH_SOCK is a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(["--ssh", "default", &ctx.display().to_string()])
        .env("RBUILD_ROOT", env.root())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("SSH_AUTH_SOCK"));
}
