//! RUN steps inside a build (through runc): their changes become a layer, their results are
//! cached, a failure names the line and exit code, and a failing stage cancels a running one.
//! Needs root and `runc` on `PATH`.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use rbuild::{BuildError, Runtime};

use crate::build_sources::rootfs_of;
use crate::build_support::{build, step_outcomes, store_with_busybox, text_request};

fn runc(mut req: rbuild::BuildRequest) -> rbuild::BuildRequest {
    req.runtime = Runtime::Oci(PathBuf::from("runc"));
    req
}

#[test]
fn run_changes_become_a_cached_layer() {
    let t = store_with_busybox();
    let text = "FROM busybox:test\nARG WHO=world\nRUN echo \"hello $WHO\" > /hi.txt && mkdir -p /opt/x\nRUN true\n";
    let (out, events) = build(&t.store, &runc(text_request(None, text)));
    assert!(step_outcomes(&events).values().any(|c| !c));
    let dest = rootfs_of(&t, &out, "rootfs");
    assert_eq!(
        fs::read_to_string(dest.join("hi.txt")).expect("hi"),
        "hello world\n"
    );
    assert!(dest.join("opt/x").is_dir());
    let history: Vec<String> = out
        .image
        .config
        .history
        .iter()
        .filter_map(|h| h.created_by.clone())
        .collect();
    assert!(
        history.contains(&"RUN |1 WHO=world /bin/sh -c echo \"hello $WHO\" > /hi.txt && mkdir -p /opt/x # buildkit".to_string()),
        "{history:?}"
    );
    let (again, _) = build(&t.store, &runc(text_request(None, text)));
    assert_eq!(again.cached, again.steps);
    assert_eq!(again.manifest_digest, out.manifest_digest);
}

#[test]
fn a_failing_run_reports_line_and_exit_code() {
    let t = store_with_busybox();
    let err = rbuild::build(
        &t.store,
        &runc(text_request(
            None,
            "FROM busybox:test\nRUN echo before\nRUN echo oops >&2; exit 3\n",
        )),
        &rbuild::events::NullSink,
    )
    .expect_err("exit 3");
    let BuildError::Step {
        origin,
        exit_code,
        message,
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(origin.start_line, 3);
    assert_eq!(*exit_code, Some(3));
    assert!(message.contains("oops"), "{message}");
}

#[test]
fn a_failing_stage_cancels_a_running_one() {
    let t = store_with_busybox();
    let text = "FROM busybox:test AS slow\nRUN sleep 60\nFROM busybox:test AS bad\nRUN exit 1\nFROM scratch\nCOPY --from=slow /bin/busybox /a\nCOPY --from=bad /bin/busybox /b\n";
    let started = Instant::now();
    let err = rbuild::build(
        &t.store,
        &runc(text_request(None, text)),
        &rbuild::events::NullSink,
    )
    .expect_err("bad stage");
    let BuildError::Step { origin, .. } = &err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(origin.start_line, 4);
    assert_eq!(origin.stage.name.as_deref(), Some("bad"));
    assert!(
        started.elapsed().as_secs() < 50,
        "the sleeping stage was cancelled"
    );
}

#[test]
fn run_mounts_read_other_stages_and_the_context() {
    let t = store_with_busybox();
    let ctx = t.dir.path().join("ctx");
    crate::build_support::old_files(&ctx, &[("in.txt", "from the context\n")]);
    let text = "FROM busybox:test AS build\nCOPY in.txt /src/in.txt\n\
                FROM busybox:test\n\
                RUN --mount=type=bind,from=build,source=/src,target=/m cat /m/in.txt > /a.txt\n\
                RUN --mount=type=bind,target=/ctx cat /ctx/in.txt > /b.txt\n";
    let (out, _) = build(&t.store, &runc(text_request(Some(&ctx), text)));
    let dest = rootfs_of(&t, &out, "rootfs");
    assert_eq!(
        fs::read_to_string(dest.join("a.txt")).expect("a"),
        "from the context\n"
    );
    assert_eq!(
        fs::read_to_string(dest.join("b.txt")).expect("b"),
        "from the context\n"
    );
    assert!(
        !dest.join("m").join("in.txt").exists(),
        "mounts leave nothing behind"
    );
}

#[test]
fn the_builtin_sandbox_runs_steps_too() {
    let t = store_with_busybox();
    let text =
        "FROM busybox:test\nUSER app\nWORKDIR /home/app/w\nRUN id -u > uid.txt && pwd > pwd.txt\n";
    let mut req = text_request(None, text);
    req.runtime = Runtime::Builtin;
    let (out, _) = build(&t.store, &req);
    let dest = rootfs_of(&t, &out, "rootfs");
    let w = dest.join("home/app/w");
    assert_eq!(
        fs::read_to_string(w.join("uid.txt")).expect("uid"),
        "1000\n"
    );
    assert_eq!(
        fs::read_to_string(w.join("pwd.txt")).expect("pwd"),
        "/home/app/w\n"
    );
}

#[test]
fn an_external_cancellation_stops_a_running_step() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    // Both executors: the flag, set while a RUN sleeps, kills it and the build says cancelled.
    for runtime in [Runtime::Builtin, Runtime::Oci(PathBuf::from("runc"))] {
        let t = store_with_busybox();
        let mut req = text_request(None, "FROM busybox:test\nRUN sleep 31339\n");
        req.runtime = runtime.clone();
        let cancel = rbuild::exec::Cancellation::new();
        let started = AtomicBool::new(false);
        let sink = |e: rbuild::events::Event| {
            if let rbuild::events::Event::StepStarted { name, .. } = &e {
                if name.contains("RUN") {
                    started.store(true, Ordering::SeqCst);
                }
            }
        };
        let took = std::thread::scope(|s| {
            s.spawn(|| {
                while !started.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Let the command start before pulling the plug.
                std::thread::sleep(Duration::from_millis(300));
                cancel.cancel();
            });
            let t0 = Instant::now();
            let err = rbuild::solve::build_with_cancel(&t.store, &req, &sink, Some(&cancel))
                .expect_err("cancelled");
            assert!(matches!(err, BuildError::Cancelled), "{runtime:?}: {err}");
            t0.elapsed()
        });
        assert!(took < Duration::from_secs(30), "{runtime:?}: took {took:?}");
        let scratch = t.store.root().join("run-v1");
        let left: Vec<_> = fs::read_dir(&scratch)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{runtime:?}: left {left:?}");
    }
}
