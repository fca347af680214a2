//! Metadata instructions end up in the image config exactly as BuildKit writes them, and the
//! files land in the image with the right bytes, modes and owners (checked through umoci).

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::json;

use crate::build_support::{
    build, config_json, copy_fixture, old, request, store_with_busybox, text_request, umoci_unpack,
};

#[test]
fn every_metadata_instruction_reaches_the_config() {
    let t = store_with_busybox();
    let case = copy_fixture("build-metadata", &t.dir.path().join("case"), old());
    let (out, _) = build(&t.store, &request(&case));
    let c = config_json(&out);
    let cfg = &c["config"];
    assert_eq!(c["created"], "1970-01-01T00:00:00Z");
    assert_eq!(c["author"], "rbuild <rbuild@example.invalid>");
    assert_eq!(
        cfg["Labels"],
        json!({"org.example.title": "metadata", "tier": "backend"})
    );
    assert_eq!(
        cfg["Env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_HOME=/app",
            "MODE=a b"
        ])
    );
    assert_eq!(
        cfg["ExposedPorts"],
        json!({"53/udp": {}, "80/tcp": {}, "8000/tcp": {}, "8001/tcp": {}})
    );
    assert_eq!(cfg["Volumes"], json!({"/data": {}}));
    assert_eq!(cfg["User"], "app");
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(
        cfg["Healthcheck"],
        json!({"Test": ["CMD", "/bin/true"], "Interval": 30_000_000_000u64, "Timeout": 3_000_000_000u64, "Retries": 2})
    );
    assert_eq!(cfg["Shell"], json!(["/bin/sh", "-ec"]));
    assert_eq!(cfg["OnBuild"], json!(["LABEL from.child=yes"]));
    assert_eq!(
        cfg["Cmd"],
        json!(["serve", "--port", "80"]),
        "a CMD of this stage survives ENTRYPOINT"
    );
    assert_eq!(cfg["Entrypoint"], json!(["/bin/app"]));

    let history: Vec<(String, bool)> = c["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap_or("").to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let want: Vec<(&str, bool)> = vec![
        ("rbuild-test-support: busybox-static", false),
        ("LABEL org.example.title=metadata tier=backend", true),
        ("MAINTAINER rbuild <rbuild@example.invalid>", true),
        ("ENV APP_HOME=/app MODE=a b", true),
        ("ARG VERSION=1.0", true),
        ("EXPOSE [80/tcp 53/udp 8000/tcp 8001/tcp]", true),
        ("VOLUME [/data]", true),
        ("USER app", true),
        ("WORKDIR /app", false),
        ("STOPSIGNAL SIGINT", true),
        (
            "HEALTHCHECK {Test:[CMD /bin/true] Interval:30s Timeout:3s StartPeriod:0s StartInterval:0s Retries:2}",
            true,
        ),
        ("SHELL [/bin/sh -ec]", true),
        (r#"CMD ["serve" "--port" "80"]"#, true),
        (r#"ENTRYPOINT ["/bin/app"]"#, true),
        ("COPY hello.txt ./ # buildkit", false),
        ("COPY --chown=app:staff --chmod=0640 data/ /data/ # buildkit", false),
    ];
    let got: Vec<(&str, bool)> = history.iter().map(|(s, e)| (s.as_str(), *e)).collect();
    assert_eq!(got, want);
    for h in c["history"].as_array().expect("history").iter().skip(1) {
        assert_eq!(h["created"], "1970-01-01T00:00:00Z");
        assert_eq!(h["comment"], "buildkit.dockerfile.v0");
    }
    assert_eq!(c["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(4));

    let rootfs = umoci_unpack(&t.store, &out, &t.dir.path().join("unpack"));
    let app = fs::metadata(rootfs.join("app")).expect("/app");
    assert_eq!(
        (app.uid(), app.gid(), app.mode() & 0o7777),
        (1000, 1000, 0o755),
        "WORKDIR is created for USER"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("app/hello.txt")).expect("hello"),
        "hello from the context\n"
    );
    let hello = fs::metadata(rootfs.join("app/hello.txt")).expect("hello");
    assert_eq!(
        (hello.uid(), hello.gid()),
        (0, 0),
        "COPY without --chown is root's"
    );
    let x = fs::metadata(rootfs.join("data/x.txt")).expect("data");
    assert_eq!((x.uid(), x.gid(), x.mode() & 0o7777), (1000, 50, 0o640));
    assert_eq!(x.mtime(), 0, "mtimes are clamped to SOURCE_DATE_EPOCH=0");
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "the base layer is there"
    );
}

#[test]
fn entrypoint_resets_an_inherited_cmd() {
    let t = store_with_busybox();
    let (out, _) = build(
        &t.store,
        &text_request(None, "FROM busybox:test\nENTRYPOINT [\"/bin/sh\"]\n"),
    );
    let c = config_json(&out);
    assert_eq!(c["config"]["Cmd"], serde_json::Value::Null);
    assert_eq!(c["config"]["Entrypoint"], json!(["/bin/sh"]));
}

#[test]
fn scratch_gets_the_default_path_and_workdir_layers_only_when_new() {
    let t = store_with_busybox();
    let text = "FROM scratch\nWORKDIR /w\nWORKDIR /w\nWORKDIR /\nCMD [\"x\"]\n";
    let (out, _) = build(&t.store, &text_request(None, text));
    let c = config_json(&out);
    assert_eq!(
        c["config"]["Env"],
        json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );
    let empties: Vec<bool> = c["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(
        empties,
        vec![false, true, true, true],
        "only the first WORKDIR makes a layer"
    );
    assert_eq!(c["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(1));
}

#[test]
fn request_labels_and_epoch_are_applied() {
    let t = store_with_busybox();
    let mut req = text_request(None, "FROM scratch\nLABEL a=1\n");
    req.labels.insert("b".into(), "2".into());
    req.epoch = Some(1_700_000_000);
    req.tags = vec!["labels:v1".into()];
    let (out, _) = build(&t.store, &req);
    let c = config_json(&out);
    assert_eq!(c["config"]["Labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(c["created"], "2023-11-14T22:13:20Z");
    assert_eq!(c["history"][0]["created"], "2023-11-14T22:13:20Z");
    let stored = t.store.resolve("labels:v1").expect("tagged");
    assert_eq!(stored.manifest_digest, out.manifest_digest);
}

#[test]
fn onbuild_triggers_of_a_base_image_run() {
    let t = store_with_busybox();
    let ctx = t.dir.path().join("ctx");
    crate::build_support::old_files(&ctx, &[("a.txt", "from trigger\n")]);
    let mut parent = text_request(
        Some(&ctx),
        "FROM busybox:test\nONBUILD COPY a.txt /trigger.txt\nONBUILD LABEL trig=1\n",
    );
    parent.tags = vec!["parent:v1".into()];
    build(&t.store, &parent);
    let (out, _) = build(
        &t.store,
        &text_request(Some(&ctx), "FROM parent:v1\nLABEL own=1\n"),
    );
    let c = config_json(&out);
    assert_eq!(c["config"]["Labels"], json!({"own": "1", "trig": "1"}));
    assert_eq!(
        c["config"]["OnBuild"],
        serde_json::Value::Null,
        "triggers do not carry over"
    );
    let rootfs = umoci_unpack(&t.store, &out, &t.dir.path().join("unpack"));
    assert_eq!(
        fs::read_to_string(rootfs.join("trigger.txt")).expect("trigger file"),
        "from trigger\n"
    );
}
