//! `ADD <url>` through the build driver: the URL's content keys the step (a changed body
//! rebuilds it, an unchanged one is a hit), `--checksum` is enforced, and the file is 0600.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use rbuild::BuildError;

use crate::build_support::{build, step_outcomes, store_with_busybox, text_request};

/// A tiny HTTP server answering every GET with the current body; returns its base URL.
fn serve(body: Arc<Mutex<Vec<u8>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = body.lock().expect("body").clone();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 15 Nov 1994 08:12:31 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_url_is_keyed_on_content() {
    let t = store_with_busybox();
    let body = Arc::new(Mutex::new(b"first body\n".to_vec()));
    let base = serve(body.clone());
    let text = format!("FROM scratch\nADD {base}/files/data.txt /d/\n");
    let (first, _) = build(&t.store, &text_request(None, &text));
    let dest = t.dir.path().join("rootfs");
    rbuild::export(
        &t.store,
        &first.image,
        &[],
        &rbuild::Output::Local { dest: dest.clone() },
    )
    .expect("export");
    assert_eq!(
        std::fs::read(dest.join("d/data.txt")).expect("file"),
        b"first body\n"
    );
    let mode = std::fs::metadata(dest.join("d/data.txt"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);

    let (again, events) = build(&t.store, &text_request(None, &text));
    assert_eq!(again.cached, again.steps, "{:?}", step_outcomes(&events));

    *body.lock().expect("body") = b"second body\n".to_vec();
    let (changed, events) = build(&t.store, &text_request(None, &text));
    assert!(
        step_outcomes(&events).values().any(|c| !c),
        "a new body rebuilds the ADD"
    );
    assert_ne!(changed.manifest_digest, first.manifest_digest);

    let wrong = format!(
        "FROM scratch\nADD --checksum=sha256:{} {base}/files/data.txt /d/\n",
        "0".repeat(64)
    );
    let err = rbuild::build(
        &t.store,
        &text_request(None, &wrong),
        &rbuild::events::NullSink,
    )
    .expect_err("checksum mismatch");
    assert!(
        matches!(err, BuildError::Step { ref origin, .. } if origin.start_line == 2),
        "{err}"
    );
}
