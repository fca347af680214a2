//! The local store commands: images, inspect, history, tag, rmi, prune.

use crate::support::{text, Env};

#[test]
fn tag_inspect_history_rmi() {
    let env = Env::new();
    env.ok(&["-t", "app:v1", "--progress", "quiet", "fixtures/hello"]);
    env.ok(&["tag", "app:v1", "registry.example.com/team/app:2"]);

    let (json, _) = env.ok(&["images", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&json).expect("json");
    let names: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["name"].as_str().unwrap_or(""),
                i["tag"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(names.contains(&"app:v1".to_string()), "{names:?}");
    assert!(
        names.contains(&"registry.example.com/team/app:2".to_string()),
        "{names:?}"
    );
    assert_eq!(list[0]["digest"], list[1]["digest"], "one image, two names");

    let (inspect, _) = env.ok(&["inspect", "registry.example.com/team/app:2"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    assert_eq!(
        v["config"]["config"]["Cmd"],
        serde_json::json!(["/bin/cat", "/hello.txt"])
    );
    assert_eq!(v["manifest"]["layers"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["digest"], list[0]["digest"]);

    let (history, _) = env.ok(&["history", "app:v1"]);
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("CREATED"), "{history}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("COPY hello.txt /hello.txt")),
        "{history}"
    );
    assert!(
        lines.iter().any(|l| l.contains("CMD [\"/bin/cat\"")),
        "{history}"
    );

    let (rmi, _) = env.ok(&["rmi", "app:v1"]);
    assert_eq!(rmi.trim(), "Untagged: app:v1");
    let (images, _) = env.ok(&["images"]);
    assert!(!images.lines().any(|l| l.starts_with("app ")), "{images}");
    let out = env.rbuild(&["inspect", "app:v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("app:v1"),
        "{}",
        text(&out.stderr)
    );
}

fn reclaimed(prune_stdout: &str) -> String {
    prune_stdout
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .unwrap_or_else(|| panic!("{prune_stdout}"))
        .to_string()
}

#[test]
fn prune_reclaims_space_and_builds_still_work() {
    let env = Env::new();
    env.ok(&["-t", "keep:v1", "--progress", "quiet", "fixtures/hello"]);
    env.ok(&[
        "-t",
        "drop:v1",
        "--progress",
        "quiet",
        "--label",
        "x=y",
        "fixtures/hello",
    ]);
    env.ok(&["rmi", "drop:v1"]);

    let (out, _) = env.ok(&["prune"]);
    assert_ne!(
        reclaimed(&out),
        "0B",
        "the dropped image's manifest and config go:\n{out}"
    );
    let (images, _) = env.ok(&["images"]);
    assert!(
        images.lines().any(|l| l.starts_with("keep ")),
        "named images stay:\n{images}"
    );

    let (out, _) = env.ok(&["prune", "--all"]);
    assert_ne!(reclaimed(&out), "0B", "the build cache goes:\n{out}");
    assert!(out.contains("cache entr"), "{out}");

    // The next build works, runs its steps again, and gives the same image.
    let (_, err) = env.ok(&["-t", "keep:v1", "--progress", "plain", "fixtures/hello"]);
    assert!(err.contains(" DONE "), "steps ran again:\n{err}");
    let (inspect, _) = env.ok(&["inspect", "keep:v1"]);
    assert!(inspect.contains("/hello.txt"), "{inspect}");
}
