//! A busybox-based image built by rbuild runs under runc and prints what its CMD says.

use crate::support::{text, umoci_unpack, Env};

#[test]
fn runc_runs_the_built_image() {
    let env = Env::new();
    env.import_busybox();
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox:test\nCOPY greeting.txt /etc/greeting\nENV WHO=runc\nCMD [\"sh\", \"-c\", \"cat /etc/greeting; echo hello from $WHO\"]\n",
            ),
            ("greeting.txt", "built by rbuild\n"),
        ],
    );
    let layout = env.path("oci");
    env.ok(&[
        "-t",
        "greeter:v1",
        "-o",
        &format!("type=oci,dest={}", layout.display()),
        "--progress",
        "plain",
        &ctx.display().to_string(),
    ]);
    let bundle = env.path("bundle");
    umoci_unpack(&layout, &bundle);
    // No terminal in tests: make the process use plain pipes.
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("config.json")).expect("json");
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    std::fs::write(&config_path, serde_json::to_vec(&config).expect("json")).expect("write");

    let id = format!("rbuild-e2e-{}", std::process::id());
    let out = std::process::Command::new("runc")
        .args(["run", "--bundle", &bundle.display().to_string(), &id])
        .output()
        .expect("runc must be installed");
    let _ = std::process::Command::new("runc")
        .args(["delete", "--force", &id])
        .output();
    assert!(out.status.success(), "runc failed: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "built by rbuild\nhello from runc\n");
}
