//! `-o/--output` and `rbuild export`: every format checked by the tool that consumes it.

use crate::support::{steps, tool, umoci_unpack, Env};

#[test]
fn oci_output_passes_umoci_and_skopeo() {
    let env = Env::new();
    let layout = env.path("oci");
    let dest = format!("type=oci,dest={}", layout.display());
    env.ok(&[
        "build",
        "-t",
        "hello:v1",
        "-o",
        &dest,
        "--progress",
        "plain",
        "fixtures/hello",
    ]);

    let inspect = tool("skopeo", &["inspect", &format!("oci:{}", layout.display())]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("skopeo json");
    assert_eq!(v["Labels"]["org.opencontainers.image.title"], "hello");
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2), "{inspect}");

    let rootfs = umoci_unpack(&layout, &env.path("bundle"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello.txt")).expect("hello.txt"),
        "hello from rbuild\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("greeting/fr.txt")).expect("fr.txt"),
        "bonjour\n"
    );
    assert!(!rootfs.join("NOTES.md").exists(), ".dockerignore applies");
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.path("bundle").join("config.json")).expect("config.json"),
    )
    .expect("runtime config");
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/bin/cat", "/hello.txt"])
    );
    assert_eq!(config["process"]["cwd"], "/greeting");
}

#[test]
fn oci_tar_docker_local_and_tar_outputs() {
    let env = Env::new();
    let oci_tar = env.path("image-oci.tar");
    let docker = env.path("image-docker.tar");
    let local = env.path("rootfs");
    let rootfs_tar = env.path("rootfs.tar");
    let outs = [
        format!("type=oci,dest={},tar=true", oci_tar.display()),
        format!("type=docker,dest={}", docker.display()),
        format!("type=local,dest={}", local.display()),
        format!("type=tar,dest={}", rootfs_tar.display()),
    ];
    let mut args = vec!["-t", "multi:v2", "--progress", "plain"];
    for o in &outs {
        args.push("-o");
        args.push(o);
    }
    args.push("fixtures/hello");
    env.ok(&args);

    let inspect = tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", docker.display())],
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("skopeo json");
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2), "{inspect}");
    assert_eq!(v["Labels"]["org.opencontainers.image.title"], "hello");

    let inspect = tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", oci_tar.display())],
    );
    assert!(
        inspect.contains("org.opencontainers.image.title"),
        "{inspect}"
    );

    assert_eq!(
        std::fs::read_to_string(local.join("hello.txt")).expect("local rootfs"),
        "hello from rbuild\n"
    );
    let listing = tool("tar", &["-tf", &rootfs_tar.display().to_string()]);
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "hello.txt"),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "greeting/de.txt"),
        "{listing}"
    );
}

#[test]
fn export_writes_a_stored_image() {
    let env = Env::new();
    env.ok(&["-t", "exp:v1", "--progress", "quiet", "fixtures/hello"]);
    let docker = env.path("exp.tar");
    env.ok(&[
        "export",
        "exp:v1",
        "-o",
        &format!("type=docker,dest={}", docker.display()),
    ]);
    let inspect = tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", docker.display())],
    );
    assert!(inspect.contains("\"Layers\""), "{inspect}");
    let manifest = tool(
        "tar",
        &["-xOf", &docker.display().to_string(), "manifest.json"],
    );
    assert!(
        manifest.contains("exp:v1"),
        "RepoTags name the image: {manifest}"
    );
}

/// `--platform` for another architecture: a build that runs nothing needs no emulator, the
/// image says the platform it was built for, and the host build does not reuse its steps.
#[test]
fn a_foreign_platform_builds_without_run_steps() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM scratch\nARG TARGETPLATFORM\nCOPY a.txt /a.txt\nLABEL built.for=$TARGETPLATFORM\n",
            ),
            ("a.txt", "payload\n"),
        ],
    );
    let foreign = if cfg!(target_arch = "aarch64") {
        ("linux/amd64", "amd64")
    } else {
        ("linux/arm64", "arm64")
    };
    let inspect = |platform: Option<&str>, name: &str| {
        let layout = env.path(name);
        let dest = format!("type=oci,dest={}", layout.display());
        let ctx = ctx.display().to_string();
        let mut args = vec!["build", "--progress", "plain", "-o", &dest];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        args.push(&ctx);
        let (_, err) = env.ok(&args);
        let copied = steps(&err)
            .into_iter()
            .find(|(_, header, _)| header.contains("COPY a.txt"))
            .unwrap_or_else(|| panic!("a COPY step in:\n{err}"));
        let json = tool("skopeo", &["inspect", &format!("oci:{}", layout.display())]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("skopeo json");
        (v, copied.2)
    };
    let (arm, first) = inspect(Some(foreign.0), "foreign");
    assert_eq!(arm["Architecture"], foreign.1, "{arm}");
    assert_eq!(arm["Os"], "linux");
    assert_eq!(arm["Labels"]["built.for"], foreign.0, "{arm}");
    assert!(first.starts_with("DONE"), "{first}");

    let (host, second) = inspect(None, "host");
    assert_ne!(host["Architecture"], foreign.1, "{host}");
    assert!(
        second.starts_with("DONE"),
        "the host build must not reuse the foreign build's COPY: {second}"
    );
}
