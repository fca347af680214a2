//! The deterministic tar writer, read back by the `tar` crate and by GNU tar: every entry type, PAX
//! long names and link targets, xattrs (incl. `security.capability`), hard links, large ids, and a
//! proptest round trip of arbitrary entry lists.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use rbuild_layers::tar::write::{sort_entries, write_tree, TarOptions, TarWriter};
use rbuild_layers::tar::{Entry, EntryKind};

/// A `security.capability` value granting cap_net_bind_service (v2 format).
const CAP_NET_BIND: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn long_name(depth: usize) -> String {
    (0..depth)
        .map(|i| format!("directory-{i:02}-with-a-long-name"))
        .collect::<Vec<_>>()
        .join("/")
}

/// One entry of every kind plus the PAX cases, with their contents, in writer order.
fn sample_entries() -> Vec<(Entry, Vec<u8>)> {
    let mut out = Vec::new();
    let mut bin = Entry::dir("bin");
    bin.mtime = 1_700_000_000;
    out.push((bin, vec![]));
    let mut ping = Entry::file("bin/ping", 5);
    ping.mode = 0o4755;
    ping.xattrs
        .insert("security.capability".into(), CAP_NET_BIND.to_vec());
    ping.xattrs.insert("user.note".into(), b"a=b\nc".to_vec());
    out.push((ping, b"ping\n".to_vec()));
    out.push((Entry::hardlink("bin/ping6", "bin/ping"), vec![]));
    out.push((Entry::symlink("bin/sh", "busybox"), vec![]));
    let mut null = Entry::with_kind(
        "dev-null",
        EntryKind::CharDevice { major: 1, minor: 3 },
        0o666,
    );
    null.mtime = 5;
    out.push((null, vec![]));
    out.push((
        Entry::with_kind(
            "dev-sda",
            EntryKind::BlockDevice {
                major: 8,
                minor: 1048575,
            },
            0o660,
        ),
        vec![],
    ));
    out.push((Entry::with_kind("fifo", EntryKind::Fifo, 0o600), vec![]));
    let mut big_ids = Entry::file("ids", 0);
    big_ids.uid = 100_000_000;
    big_ids.gid = 4_000_000_000;
    out.push((big_ids, vec![]));
    // 101..=255 bytes: ustar prefix; longer: PAX path.
    let mid = format!("{}/f", long_name(4));
    let long = format!("{}/f", long_name(9));
    let mut entries_long = vec![
        (Entry::file(mid.clone(), 3), b"mid".to_vec()),
        (Entry::file(long.clone(), 4), b"long".to_vec()),
        (Entry::symlink("link-long", long.clone()), vec![]),
        (Entry::file("ünïcödé", 1), b"u".to_vec()),
    ];
    out.append(&mut entries_long);
    let mut sorted: Vec<Entry> = out.iter().map(|(e, _)| e.clone()).collect();
    sort_entries(&mut sorted);
    let mut by_path: BTreeMap<String, (Entry, Vec<u8>)> = out
        .into_iter()
        .map(|(e, d)| (e.path.clone(), (e, d)))
        .collect();
    sorted
        .into_iter()
        .map(|e| by_path.remove(&e.path).expect("present"))
        .collect()
}

fn write(entries: &[(Entry, Vec<u8>)], opts: TarOptions) -> Vec<u8> {
    let mut tar = TarWriter::new(Vec::new(), opts);
    for (entry, data) in entries {
        tar.append(entry, &mut &data[..]).expect("append");
    }
    tar.finish().expect("finish")
}

/// Parse PAX records by their length prefixes (the `tar` crate's own parser splits on newlines,
/// which breaks on binary xattr values that contain `\n`).
fn parse_pax(mut data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    while !data.is_empty() {
        let space = data.iter().position(|b| *b == b' ').expect("length");
        let len: usize = std::str::from_utf8(&data[..space])
            .expect("utf8")
            .parse()
            .expect("number");
        let record = &data[space + 1..len - 1];
        assert_eq!(data[len - 1], b'\n', "record ends with newline");
        let eq = record.iter().position(|b| *b == b'=').expect("=");
        out.insert(
            String::from_utf8(record[..eq].to_vec()).expect("key"),
            record[eq + 1..].to_vec(),
        );
        data = &data[len..];
    }
    out
}

/// The PAX records preceding each real entry, in archive order.
fn pax_per_entry(bytes: &[u8]) -> Vec<BTreeMap<String, Vec<u8>>> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    let mut pending = BTreeMap::new();
    for item in archive.entries().expect("entries").raw(true) {
        let mut item = item.expect("raw entry");
        if item.header().entry_type() == tar::EntryType::XHeader {
            let mut data = Vec::new();
            item.read_to_end(&mut data).expect("pax data");
            pending = parse_pax(&data);
        } else {
            out.push(std::mem::take(&mut pending));
        }
    }
    out
}

/// Parse an archive with the `tar` crate into entries (PAX uid/gid/mtime/xattrs applied) and contents.
fn read_back(bytes: &[u8]) -> Vec<(Entry, Vec<u8>)> {
    let mut paxes = pax_per_entry(bytes).into_iter();
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for item in archive.entries().expect("entries") {
        let mut item = item.expect("entry");
        let header = item.header().clone();
        let pax = paxes.next().expect("pax slot");
        let num = |key: &str, fallback: u64| -> i64 {
            pax.get(key).map_or(fallback as i64, |v| {
                std::str::from_utf8(v)
                    .expect("utf8")
                    .parse()
                    .expect("number")
            })
        };
        // Take path and linkpath from our own PAX parse when present (see parse_pax).
        let text = |v: &Vec<u8>| String::from_utf8(v.clone()).expect("utf8");
        let path = pax.get("path").map(text).unwrap_or_else(|| {
            item.path()
                .expect("path")
                .to_str()
                .expect("utf8")
                .to_string()
        });
        let path = path.trim_end_matches('/').to_string();
        let link = || {
            pax.get("linkpath").map(text).unwrap_or_else(|| {
                item.link_name()
                    .expect("link")
                    .expect("has link")
                    .to_str()
                    .expect("utf8")
                    .to_string()
            })
        };
        let kind = match header.entry_type() {
            tar::EntryType::Regular => EntryKind::File { size: item.size() },
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink { target: link() },
            tar::EntryType::Link => EntryKind::HardLink { target: link() },
            tar::EntryType::Char => EntryKind::CharDevice {
                major: header.device_major().expect("major").expect("major"),
                minor: header.device_minor().expect("minor").expect("minor"),
            },
            tar::EntryType::Block => EntryKind::BlockDevice {
                major: header.device_major().expect("major").expect("major"),
                minor: header.device_minor().expect("minor").expect("minor"),
            },
            tar::EntryType::Fifo => EntryKind::Fifo,
            other => panic!("unexpected entry type {other:?}"),
        };
        let xattrs = pax
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("SCHILY.xattr.")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect();
        let entry = Entry {
            path,
            kind,
            mode: header.mode().expect("mode"),
            uid: num("uid", header.uid().expect("uid")) as u32,
            gid: num("gid", header.gid().expect("gid")) as u32,
            mtime: num("mtime", header.mtime().expect("mtime")),
            xattrs,
        };
        assert_eq!(
            header.username_bytes(),
            Some(&b""[..]),
            "uname of {}",
            entry.path
        );
        assert_eq!(
            header.groupname_bytes(),
            Some(&b""[..]),
            "gname of {}",
            entry.path
        );
        let mut data = Vec::new();
        item.read_to_end(&mut data).expect("content");
        out.push((entry, data));
    }
    out
}

#[test]
fn every_entry_type_reads_back_with_the_tar_crate() {
    let entries = sample_entries();
    let bytes = write(&entries, TarOptions::keep_mtimes());
    assert_eq!(bytes.len() % 512, 0);
    assert!(
        bytes[bytes.len() - 1024..].iter().all(|b| *b == 0),
        "two zero blocks at the end"
    );
    assert_eq!(read_back(&bytes), entries);
}

#[test]
fn no_gnu_longlink_and_pax_headers_only_where_needed() {
    let bytes = write(&sample_entries(), TarOptions::default());
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut raw = Vec::new();
    for item in archive.entries().expect("entries").raw(true) {
        let item = item.expect("raw entry");
        raw.push((
            item.header().entry_type(),
            String::from_utf8_lossy(&item.path_bytes()).into_owned(),
        ));
    }
    assert!(raw
        .iter()
        .all(|(t, _)| !matches!(t, tar::EntryType::GNULongName | tar::EntryType::GNULongLink)));
    let pax_names: Vec<&str> = raw
        .iter()
        .filter(|(t, _)| *t == tar::EntryType::XHeader)
        .map(|(_, n)| n.as_str())
        .collect();
    // xattrs, large ids, the >255-byte path, the long link target and the non-ASCII name.
    assert_eq!(pax_names.len(), 5, "{pax_names:?}");
    assert!(pax_names.contains(&"bin/PaxHeaders.0/ping"));
    assert!(pax_names.contains(&"PaxHeaders.0/ids"));
}

#[test]
fn gnu_tar_lists_and_extracts_the_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("layer.tar");
    let entries = sample_entries();
    std::fs::write(&archive, write(&entries, TarOptions::keep_mtimes())).expect("write archive");

    let listing = Command::new("tar")
        .env("LC_ALL", "C.UTF-8")
        .args(["--numeric-owner", "--quoting-style=literal", "-tvf"])
        .arg(&archive)
        .output()
        .expect("run tar");
    assert!(
        listing.status.success(),
        "tar -t: {}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let listing = String::from_utf8(listing.stdout).expect("utf8");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), entries.len(), "{listing}");
    for (line, (entry, _)) in lines.iter().zip(&entries) {
        let type_char = match entry.kind {
            EntryKind::File { .. } => '-',
            EntryKind::Dir => 'd',
            EntryKind::Symlink { .. } => 'l',
            EntryKind::HardLink { .. } => 'h',
            EntryKind::CharDevice { .. } => 'c',
            EntryKind::BlockDevice { .. } => 'b',
            EntryKind::Fifo => 'p',
        };
        assert!(line.starts_with(type_char), "{line} for {}", entry.path);
        assert!(
            line.contains(&entry.path),
            "{line} should name {}",
            entry.path
        );
    }
    assert!(listing.contains("-rwsr-xr-x 0/0"), "{listing}");
    assert!(listing.contains("100000000/4000000000"), "{listing}");
    assert!(listing.contains("bin/ping6 link to bin/ping"), "{listing}");

    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let extract = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .output()
        .expect("run tar");
    assert!(
        extract.status.success(),
        "tar -x: {}",
        String::from_utf8_lossy(&extract.stderr)
    );
    let ping = out.join("bin/ping");
    assert_eq!(std::fs::read(&ping).expect("ping"), b"ping\n");
    let meta = std::fs::metadata(&ping).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o4755);
    assert_eq!(
        meta.ino(),
        std::fs::metadata(out.join("bin/ping6"))
            .expect("stat")
            .ino(),
        "hard link"
    );
    assert_eq!(
        std::fs::read_link(out.join("bin/sh"))
            .expect("readlink")
            .to_str(),
        Some("busybox")
    );
    assert!(std::fs::metadata(out.join("fifo"))
        .expect("fifo")
        .file_type()
        .is_fifo());
    let long = entries
        .iter()
        .find(|(e, _)| e.path.len() > 255)
        .expect("long entry");
    assert_eq!(
        std::fs::read(out.join(&long.0.path)).expect("long file"),
        b"long"
    );
    assert_eq!(std::fs::read(out.join("ünïcödé")).expect("unicode"), b"u");
    assert_eq!(
        std::fs::metadata(out.join("ids")).expect("ids").uid(),
        100_000_000
    );
    assert_eq!(
        get_xattr(&ping, "user.note").as_deref(),
        Some(&b"a=b\nc"[..])
    );
    assert_eq!(
        get_xattr(&ping, "security.capability").as_deref(),
        Some(CAP_NET_BIND)
    );
    let null = std::fs::metadata(out.join("dev-null")).expect("dev-null");
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (
            rustix::fs::major(null.rdev()),
            rustix::fs::minor(null.rdev())
        ),
        (1, 3)
    );
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A small tree with every kind write_tree handles; returns the root.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
    std::fs::create_dir_all(root.join("a-b")).expect("mkdir");
    std::fs::write(root.join("a/b/file"), b"content").expect("write");
    std::fs::write(root.join("a.txt"), b"x").expect("write");
    std::fs::hard_link(root.join("a/b/file"), root.join("z-link")).expect("hard link");
    std::os::unix::fs::symlink("../a.txt", root.join("a/sym")).expect("symlink");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("a/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .expect("mkfifo");
    rustix::fs::lsetxattr(
        root.join("a.txt"),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setxattr");
    std::os::unix::net::UnixListener::bind(root.join("sock")).expect("socket");
}

#[test]
fn write_tree_walks_in_containerd_order_with_links_and_xattrs() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_tree(dir.path());
    let bytes = write_tree(dir.path(), Vec::new(), TarOptions::default()).expect("write tree");
    let entries = read_back(&bytes);
    let paths: Vec<&str> = entries.iter().map(|(e, _)| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["a", "a/b", "a/b/file", "a/fifo", "a/sym", "a-b", "a.txt", "z-link"]
    );
    let by_path: BTreeMap<&str, &(Entry, Vec<u8>)> =
        entries.iter().map(|e| (e.0.path.as_str(), e)).collect();
    assert_eq!(
        by_path["z-link"].0.kind,
        EntryKind::HardLink {
            target: "a/b/file".into()
        }
    );
    assert_eq!(by_path["a/b/file"].1, b"content");
    assert_eq!(
        by_path["a/sym"].0.kind,
        EntryKind::Symlink {
            target: "../a.txt".into()
        }
    );
    assert_eq!(by_path["a/fifo"].0.kind, EntryKind::Fifo);
    assert_eq!(by_path["a/fifo"].0.mode, 0o640);
    assert_eq!(
        by_path["a.txt"].0.xattrs.get("user.k").map(Vec::as_slice),
        Some(&b"v"[..])
    );
    assert!(
        entries.iter().all(|(e, _)| e.mtime == 0),
        "mtimes clamped to epoch 0"
    );
}

#[test]
fn write_tree_reports_missing_directory_with_its_path() {
    let err = write_tree(
        Path::new("/nonexistent/rbuild-test"),
        io::sink(),
        TarOptions::default(),
    )
    .expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/rbuild-test"),
        "{err}"
    );
}

/// Entries (kind, path, mode, uid, gid, mtime, size/target/dev, xattrs) exercising ustar prefix
/// splits, PAX paths/linkpaths, non-ASCII names, ids ≥ 8^7, negative and ≥ 8^11 mtimes, devices and
/// xattrs. File contents are bytes `i % 251`.
const GO_GOLDEN_SPEC: &[&str] = &[
    "fifo\ta/b/a/d-7/ñame\t755\t4000000000\t1000\t8589934592\t\t",
    "hardlink\ta/b/ü\t4755\t65534\t0\t0\tü/ñame/yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy/xxxxxxxxxxxxxxxxxxx/dir\t",
    "symlink\td-1/ñame/xxxxxxxxxxxxxxxxxxxxxxx/ñame/dir/a\t1777\t0\t1000\t0\t/abs/ü\tuser.a=d5e760caf4247512f49c8f",
    "dir\txxxxxxxxxxxxxxxxxx/dir/xxxxxxxxx/yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy/b\t0\t2097152\t0\t0\t\t",
    "file\txxxxxxxxxxxxxxxxxxxxxxxxx/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/d-1\t644\t0\t1000\t8589934591\t512\t",
    "char\tyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy/ü\t4755\t2097151\t0\t8589934591\t3533:480910\t",
    "hardlink\tyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy/dir/yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\t755\t2097151\t0\t-5\txxxxxxxxxxxxxxxxxxxxxxxxx/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/d-1\t",
    "file\tñame/dir/ü/d-4/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/a\t4755\t0\t3000000\t-5\t512\tuser.a=919019b806d2eb5582",
    "block\tñame/ñame/ñame/dir/d-2/a\t644\t65534\t1000\t1099511627776\t399:661926\t",
    "block\tü/yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy/dir/xxxxxxxxxxxxxxxxxxxxxxxxx/xxxxxxxxxx/d-8\t755\t2097152\t0\t-5\t1314:780125\tsecurity.capability=4ece34edbc6479279fa6f4fd;user.a=936d78f7",
    "file\tü/ñame/yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy/xxxxxxxxxxxxxxxxxxx/dir\t1777\t0\t0\t-5\t1\t",
];

/// sha256 of the archive Go's `archive/tar` writes for [`GO_GOLDEN_SPEC`] with `Format: FormatPAX`
/// (containerd's settings: dirs named `x/`, `ModTime: time.Unix(mtime, 0)`, xattrs as
/// `PAXRecords["SCHILY.xattr.<name>"]`, empty uname/gname), go1 toolchain of Debian.
const GO_GOLDEN_SHA256: &str = "83676702af4360fc53d6098766dd5679458e927c831e2bb78c79bc33c644d78d";

fn parse_spec_line(line: &str) -> (Entry, Vec<u8>) {
    let f: Vec<&str> = line.split('\t').collect();
    let num = |s: &str| s.parse::<u32>().expect("number");
    let kind = match f[0] {
        "file" => EntryKind::File {
            size: f[6].parse().expect("size"),
        },
        "dir" => EntryKind::Dir,
        "symlink" => EntryKind::Symlink {
            target: f[6].into(),
        },
        "hardlink" => EntryKind::HardLink {
            target: f[6].into(),
        },
        "char" | "block" => {
            let (major, minor) = f[6].split_once(':').expect("major:minor");
            let (major, minor) = (num(major), num(minor));
            if f[0] == "char" {
                EntryKind::CharDevice { major, minor }
            } else {
                EntryKind::BlockDevice { major, minor }
            }
        }
        _ => EntryKind::Fifo,
    };
    let mut entry = Entry {
        path: f[1].into(),
        kind,
        mode: u32::from_str_radix(f[2], 8).expect("mode"),
        uid: num(f[3]),
        gid: num(f[4]),
        mtime: f[5].parse().expect("mtime"),
        xattrs: BTreeMap::new(),
    };
    for kv in f[7].split(';').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').expect("name=hex");
        let value = (0..v.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&v[i..i + 2], 16).expect("hex"))
            .collect();
        entry.xattrs.insert(k.into(), value);
    }
    let data = (0..entry.size()).map(|i| (i % 251) as u8).collect();
    (entry, data)
}

#[test]
fn matches_go_archive_tar_byte_for_byte() {
    let entries: Vec<(Entry, Vec<u8>)> =
        GO_GOLDEN_SPEC.iter().map(|l| parse_spec_line(l)).collect();
    let bytes = write(&entries, TarOptions::keep_mtimes());
    assert_eq!(
        rbuild_layers::digest::Digest::of(&bytes).hex(),
        GO_GOLDEN_SHA256
    );
    assert_eq!(read_back(&bytes), entries);
}

fn arb_kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        (0u64..2000).prop_map(|size| EntryKind::File { size }),
        Just(EntryKind::Dir),
        "[a-z./]{1,120}".prop_map(|target| EntryKind::Symlink { target }),
        (0u32..4096, 0u32..1_048_576)
            .prop_map(|(major, minor)| EntryKind::CharDevice { major, minor }),
        (0u32..4096, 0u32..1_048_576)
            .prop_map(|(major, minor)| EntryKind::BlockDevice { major, minor }),
        Just(EntryKind::Fifo),
    ]
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        proptest::collection::vec("[a-zA-Z0-9._-]{1,40}|ü[a-z]{0,3}", 1..8),
        arb_kind(),
        0u32..0o10000,
        prop_oneof![0u32..70000, any::<u32>()],
        prop_oneof![0u32..70000, any::<u32>()],
        prop_oneof![
            0i64..2_000_000_000,
            -100_000i64..100_000,
            any::<i64>().prop_map(|t| t >> 20)
        ],
        proptest::collection::btree_map(
            "user\\.[a-z]{1,8}",
            proptest::collection::vec(any::<u8>(), 0..20),
            0..3,
        ),
    )
        .prop_filter("no . or .. components", |(parts, ..)| {
            parts.iter().all(|p| p != "." && p != "..")
        })
        .prop_map(|(parts, kind, mode, uid, gid, mtime, xattrs)| Entry {
            path: parts.join("/"),
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_of_arbitrary_entry_lists(mut entries in proptest::collection::vec(arb_entry(), 0..20)) {
        sort_entries(&mut entries);
        entries.dedup_by(|a, b| a.path == b.path);
        let with_data: Vec<(Entry, Vec<u8>)> = entries
            .into_iter()
            .map(|e| {
                let data: Vec<u8> = (0..e.size()).map(|i| (i % 251) as u8).collect();
                (e, data)
            })
            .collect();
        let bytes = write(&with_data, TarOptions::keep_mtimes());
        prop_assert_eq!(read_back(&bytes), with_data.clone());
        // Same input, same bytes.
        prop_assert_eq!(write(&with_data, TarOptions::keep_mtimes()), bytes);
    }
}
