//! COPY and ADD planning against real temporary trees: one test per BuildKit rule, asserting the
//! planned entries (path, kind, mode, owner, link targets, content bytes) and, for a few, the
//! layer blob read back from the store.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use rbuild::graph::{Chmod, ContextName, CopyKind, CopyOp, CopySource, FsInput, UserSpec};
use rbuild::ops::copy::{
    plan_copy, Content, CopyError, CopyPlan, CopyRequest, PlannedEntry, SourceRoot,
};
use rbuild::ops::fetch::{Fetcher, HttpFetcher, NoFetcher};
use rbuild_dockerfile::ignore::IgnoreRules;
use rbuild_layers::store::{BlobStore, LayerOptions};
use rbuild_layers::tar::entry::EntryKind;

const OLD: i64 = 1_600_000_000;

fn op(sources: &[&str], dest: &str) -> CopyOp {
    CopyOp {
        kind: CopyKind::Copy,
        from: FsInput::Context(ContextName::main()),
        sources: sources
            .iter()
            .map(|s| CopySource::Path(s.to_string()))
            .collect(),
        dest: dest.to_string(),
        workdir: "/".to_string(),
        chown: None,
        chmod: None,
        link: false,
        exclude: vec![],
        parents: false,
        checksum: None,
    }
}

fn add_op(sources: &[&str], dest: &str) -> CopyOp {
    CopyOp {
        kind: add_kind(None),
        ..op(sources, dest)
    }
}

/// ADD with `--unpack` as given (`None`: not given), without `--keep-git-dir`.
fn add_kind(unpack: Option<bool>) -> CopyKind {
    CopyKind::Add {
        unpack,
        keep_git_dir: false,
    }
}

/// The kind of a symlink entry pointing at `target`.
fn symlink_to(target: &str) -> EntryKind {
    EntryKind::Symlink {
        target: target.into(),
    }
}

/// Write a file with a mode and an old mtime.
fn file(root: &Path, rel: &str, content: &str, mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
    fs::write(&p, content).expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    let f = fs::File::options().write(true).open(&p).expect("open");
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(OLD as u64))
        .expect("mtime");
}

fn dir(root: &Path, rel: &str, mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(&p).expect("mkdir");
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn plan_in(
    op: &CopyOp,
    source: SourceRoot,
    dest_root: Option<&Path>,
) -> Result<CopyPlan, CopyError> {
    plan_copy(&CopyRequest {
        op,
        source,
        dest_root,
        fetcher: &NoFetcher,
    })
}

/// Plan `op` from no context or tree, fetching its URL sources with `fetcher`.
fn plan_fetched(op: &CopyOp, fetcher: &dyn Fetcher) -> Result<CopyPlan, CopyError> {
    plan_copy(&CopyRequest {
        op,
        source: SourceRoot::Empty,
        dest_root: None,
        fetcher,
    })
}

/// A test's trees: a build context and a parent rootfs (what the destination already holds),
/// each in a temporary directory of its own.
struct Trees {
    ctx: tempfile::TempDir,
    root: tempfile::TempDir,
}

impl Trees {
    /// An empty context and an empty parent rootfs.
    fn new() -> Trees {
        Trees {
            ctx: tempfile::tempdir().expect("tempdir"),
            root: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// An empty context and a parent rootfs laid out by [`rootfs`].
    fn with_rootfs() -> Trees {
        let t = Trees::new();
        rootfs(t.root());
        t
    }

    fn ctx(&self) -> &Path {
        self.ctx.path()
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    /// Write a context file with `mode` and an old mtime.
    fn file(&self, rel: &str, content: &str, mode: u32) {
        file(self.ctx(), rel, content, mode);
    }

    /// Write context files (path, content), each 0644 with an old mtime.
    fn files(&self, files: &[(&str, &str)]) {
        for (rel, content) in files {
            self.file(rel, content, 0o644);
        }
    }

    /// Create a context directory with `mode`.
    fn dir(&self, rel: &str, mode: u32) {
        dir(self.ctx(), rel, mode);
    }

    /// Create the context symlink `rel` pointing at `target`.
    fn symlink(&self, target: &str, rel: &str) {
        symlink(target, self.ctx().join(rel)).expect("symlink");
    }

    /// Plan `op` from the context, with no parent rootfs.
    fn try_plan(&self, op: &CopyOp) -> Result<CopyPlan, CopyError> {
        self.try_plan_into(op, None)
    }

    /// Plan `op` from the context onto the parent rootfs.
    fn try_plan_onto_root(&self, op: &CopyOp) -> Result<CopyPlan, CopyError> {
        self.try_plan_into(op, Some(self.root()))
    }

    fn try_plan_into(&self, op: &CopyOp, dest_root: Option<&Path>) -> Result<CopyPlan, CopyError> {
        let source = SourceRoot::Context {
            dir: self.ctx(),
            ignore: None,
        };
        plan_in(op, source, dest_root)
    }

    /// [`Trees::try_plan`], which must succeed.
    fn plan(&self, op: &CopyOp) -> CopyPlan {
        self.try_plan(op).expect("plan")
    }

    /// [`Trees::try_plan_onto_root`], which must succeed.
    fn plan_onto_root(&self, op: &CopyOp) -> CopyPlan {
        self.try_plan_onto_root(op).expect("plan")
    }
}

fn paths(plan: &CopyPlan) -> Vec<&str> {
    plan.entries.iter().map(|e| e.entry.path.as_str()).collect()
}

fn get<'a>(plan: &'a CopyPlan, path: &str) -> &'a PlannedEntry {
    plan.entries
        .iter()
        .find(|e| e.entry.path == path)
        .unwrap_or_else(|| panic!("no entry {path} in {:?}", paths(plan)))
}

fn bytes(pe: &PlannedEntry) -> Vec<u8> {
    match &pe.content {
        Content::HostFile(p) => fs::read(p).expect("read host file"),
        Content::Bytes(b) => b.clone(),
        Content::None => Vec::new(),
    }
}

/// Assert (path, kind name, mode, uid, gid) of an entry.
fn meta(plan: &CopyPlan, path: &str, kind: &str, mode: u32, owner: (u32, u32)) {
    let e = &get(plan, path).entry;
    assert_eq!(
        (e.kind.name(), e.mode, e.uid, e.gid),
        (kind, mode, owner.0, owner.1),
        "{path}: mode {:o}",
        e.mode
    );
}

/// A parent rootfs with passwd/group files, a `lib -> usr/lib` symlink and an absolute one.
fn rootfs(root: &Path) {
    file(
        root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        0o644,
    );
    file(
        root,
        "etc/group",
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
        0o644,
    );
    dir(root, "usr/lib", 0o755);
    symlink("usr/lib", root.join("lib")).expect("symlink");
    dir(root, "srv/data", 0o700);
    symlink("/srv/data", root.join("data")).expect("symlink");
}

#[test]
fn single_file_keeps_mode_and_mtime_owned_by_root() {
    let t = Trees::new();
    t.file("app.sh", "#!/bin/sh\n", 0o750);
    let plan = t.plan(&op(&["app.sh"], "/usr/bin/app"));
    assert_eq!(paths(&plan), ["usr", "usr/bin", "usr/bin/app"]);
    meta(&plan, "usr", "dir", 0o755, (0, 0));
    meta(&plan, "usr/bin/app", "file", 0o750, (0, 0));
    assert_eq!(get(&plan, "usr/bin/app").entry.mtime, OLD);
    assert_eq!(bytes(get(&plan, "usr/bin/app")), b"#!/bin/sh\n");
}

#[test]
fn file_into_directory_when_dest_ends_with_slash() {
    let t = Trees::new();
    t.file("a.txt", "a", 0o644);
    let plan = t.plan(&op(&["a.txt"], "/dst/"));
    assert_eq!(paths(&plan), ["dst", "dst/a.txt"]);
    let plan = t.plan(&op(&["a.txt"], "/dst/."));
    assert_eq!(paths(&plan), ["dst", "dst/a.txt"]);
    let plan = t.plan(&op(&["a.txt"], "/dst"));
    assert_eq!(paths(&plan), ["dst"]);
    assert!(get(&plan, "dst").entry.is_file());
}

#[test]
fn file_into_existing_directory_without_slash() {
    let t = Trees::new();
    t.file("a.txt", "a", 0o644);
    dir(t.root(), "opt", 0o711);
    let plan = t.plan_onto_root(&op(&["a.txt"], "/opt"));
    assert_eq!(paths(&plan), ["opt", "opt/a.txt"]);
    meta(&plan, "opt", "dir", 0o711, (0, 0));
}

#[test]
fn directory_copies_its_contents() {
    let t = Trees::new();
    t.dir("src", 0o700);
    t.file("src/a.txt", "a", 0o644);
    t.dir("src/sub", 0o750);
    t.file("src/sub/b.txt", "b", 0o600);
    let plan = t.plan(&op(&["src"], "/app"));
    assert_eq!(
        paths(&plan),
        ["app", "app/a.txt", "app/sub", "app/sub/b.txt"]
    );
    // The top directory is created by MkdirAll (0755), subdirectories keep their mode.
    meta(&plan, "app", "dir", 0o755, (0, 0));
    meta(&plan, "app/sub", "dir", 0o750, (0, 0));
    meta(&plan, "app/sub/b.txt", "file", 0o600, (0, 0));
}

#[test]
fn context_root_copy_and_dest_relative_to_workdir() {
    let t = Trees::new();
    t.file("x", "x", 0o644);
    let mut o = op(&["."], ".");
    o.workdir = "/work/dir".into();
    let plan = t.plan(&o);
    assert_eq!(paths(&plan), ["work", "work/dir", "work/dir/x"]);
    let mut o = op(&["x"], "sub/y");
    o.workdir = "/w".into();
    let plan = t.plan(&o);
    assert_eq!(paths(&plan), ["w", "w/sub", "w/sub/y"]);
}

#[test]
fn wildcards_match_per_component_in_walk_order() {
    let t = Trees::new();
    t.files(&[
        ("b.txt", "b"),
        ("a.txt", "a"),
        ("c.md", "c"),
        ("docs/x.txt", "x"),
        ("docs/deep/y.txt", "y"),
    ]);
    let plan = t.plan(&op(&["*.txt", "d*/*.txt"], "/out/"));
    assert_eq!(paths(&plan), ["out", "out/a.txt", "out/b.txt", "out/x.txt"]);
    let plan = t.plan(&op(&["[ab].tx?"], "/out/"));
    assert_eq!(paths(&plan), ["out", "out/a.txt", "out/b.txt"]);
}

#[test]
fn wildcard_without_match_copies_nothing_but_missing_parent_fails() {
    let t = Trees::new();
    t.file("a.txt", "a", 0o644);
    // BuildKit's AllowEmptyWildcard: no error, no layer content.
    let plan = t.plan(&op(&["*.nomatch"], "/out/"));
    assert!(plan.is_empty());
    let err = t
        .try_plan(&op(&["missing/*.txt"], "/out/"))
        .expect_err("fails");
    assert_eq!(err.to_string(), "lstat /missing: no such file or directory");
}

#[test]
fn missing_source_is_not_found() {
    let t = Trees::new();
    let err = t.try_plan(&op(&["nope.txt"], "/")).expect_err("fails");
    assert!(matches!(&err, CopyError::NotFound { path, excluded_by: None } if path == "/nope.txt"));
    assert_eq!(err.to_string(), "\"/nope.txt\": not found");
}

#[test]
fn dockerignore_hides_files_and_names_the_rule() {
    let t = Trees::new();
    t.files(&[
        ("keep.txt", "k"),
        ("secret.env", "s"),
        ("logs/a.log", "l"),
        ("logs/keep.log", "kl"),
    ]);
    let rules =
        IgnoreRules::from_file_text(Path::new(".dockerignore"), "*.env\nlogs\n!logs/keep.log\n")
            .expect("rules");
    let src = SourceRoot::Context {
        dir: t.ctx(),
        ignore: Some(&rules),
    };
    let plan = plan_in(&op(&["."], "/app/"), src, None).expect("plan");
    assert_eq!(
        paths(&plan),
        ["app", "app/keep.txt", "app/logs", "app/logs/keep.log"]
    );
    let err = plan_in(&op(&["secret.env"], "/app/"), src, None).expect_err("excluded");
    match &err {
        CopyError::NotFound {
            path,
            excluded_by: Some(rule),
        } => {
            assert_eq!(path, "/secret.env");
            assert!(rule.contains("*.env"), "{rule}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().contains("excluded by .dockerignore"),
        "{err}"
    );
}

#[test]
fn several_sources_need_a_directory_destination() {
    let t = Trees::new();
    t.files(&[("a", "a"), ("b", "b")]);
    let err = t.try_plan(&op(&["a", "b"], "/dst")).expect_err("fails");
    assert!(matches!(
        err,
        CopyError::MultipleSourcesNeedDir {
            instruction: "COPY",
            ..
        }
    ));
    assert!(err
        .to_string()
        .contains("must be a directory and end with a /"));
    let plan = t.plan(&op(&["a", "b"], "/dst/"));
    assert_eq!(paths(&plan), ["dst", "dst/a", "dst/b"]);
}

#[test]
fn dest_symlinks_in_parent_rootfs_resolve_inside_it() {
    let t = Trees::with_rootfs();
    t.file("libx.so", "elf", 0o755);
    let plan = t.plan_onto_root(&op(&["libx.so"], "/lib/"));
    assert_eq!(paths(&plan), ["usr", "usr/lib", "usr/lib/libx.so"]);
    // An absolute symlink resolves inside the rootfs, never on the host.
    let plan = t.plan_onto_root(&op(&["libx.so"], "/data/x"));
    assert_eq!(paths(&plan), ["srv", "srv/data", "srv/data/x"]);
    meta(&plan, "srv/data", "dir", 0o700, (0, 0));
}

#[test]
fn existing_ancestors_carry_parent_metadata() {
    let t = Trees::new();
    dir(t.root(), "opt/app", 0o710);
    std::os::unix::fs::chown(t.root().join("opt/app"), Some(7), Some(8)).expect("chown");
    t.file("f", "f", 0o644);
    let plan = t.plan_onto_root(&op(&["f"], "/opt/app/new/f"));
    assert_eq!(
        paths(&plan),
        ["opt", "opt/app", "opt/app/new", "opt/app/new/f"]
    );
    meta(&plan, "opt/app", "dir", 0o710, (7, 8));
    meta(&plan, "opt/app/new", "dir", 0o755, (0, 0));
}

#[test]
fn chown_names_resolve_against_dest_rootfs() {
    let t = Trees::with_rootfs();
    t.dir("d", 0o755);
    t.file("d/f", "f", 0o644);
    let mut o = op(&["d"], "/home/app/d");
    o.chown = UserSpec::parse("app:staff");
    let plan = t.plan_onto_root(&o);
    // Created parents belong to the --chown owner, as fsutil's MkdirAll does.
    meta(&plan, "home", "dir", 0o755, (1000, 50));
    meta(&plan, "home/app/d", "dir", 0o755, (1000, 50));
    meta(&plan, "home/app/d/f", "file", 0o644, (1000, 50));
    let mut o = op(&["d"], "/x/");
    o.chown = UserSpec::parse("1234");
    let plan = t.plan(&o);
    meta(&plan, "x/f", "file", 0o644, (1234, 1234));
    o.chown = UserSpec::parse("nobody");
    let err = t.try_plan_onto_root(&o).expect_err("unknown user");
    assert!(err.to_string().contains("nobody"), "{err}");
}

#[test]
fn chmod_octal_and_symbolic_apply_to_files_and_dirs_not_symlinks() {
    let t = Trees::new();
    t.dir("d/sub", 0o700);
    t.file("d/run.sh", "x", 0o644);
    t.symlink("run.sh", "d/link");
    let mut o = op(&["d"], "/o/");
    o.chmod = Some(Chmod::Octal(0o640));
    let plan = t.plan(&o);
    meta(&plan, "o/run.sh", "file", 0o640, (0, 0));
    meta(&plan, "o/sub", "dir", 0o640, (0, 0));
    meta(&plan, "o/link", "symlink", 0o777, (0, 0));
    o.chmod = Some(Chmod::Symbolic("u+x,g-w,o=".into()));
    let plan = t.plan(&o);
    meta(&plan, "o/run.sh", "file", 0o740, (0, 0));
    meta(&plan, "o/sub", "dir", 0o700, (0, 0));
}

#[test]
fn exclude_patterns_filter_copied_paths() {
    let t = Trees::new();
    t.files(&[
        ("src/a.rs", "a"),
        ("src/a.txt", "t"),
        ("src/target/big", "b"),
        ("top.txt", "t"),
        ("top.md", "m"),
    ]);
    let mut o = op(&["src"], "/s/");
    o.exclude = vec!["*.txt".into(), "target".into()];
    let plan = t.plan(&o);
    assert_eq!(paths(&plan), ["s", "s/a.rs"]);
    let mut o = op(&["top*"], "/t/");
    o.exclude = vec!["*.txt".into()];
    let plan = t.plan(&o);
    assert_eq!(paths(&plan), ["t", "t/top.md"]);
}

#[test]
fn parents_keep_the_path_below_the_pivot() {
    let t = Trees::new();
    t.dir("a/b", 0o750);
    t.files(&[("a/b/c.txt", "c"), ("a/b/d.md", "d"), ("x/y/z.txt", "z")]);
    let mut o = op(&["a/b/c.txt", "./x/./y/z.txt"], "/dst/");
    o.parents = true;
    let plan = t.plan(&o);
    assert_eq!(
        paths(&plan),
        [
            "dst",
            "dst/a",
            "dst/a/b",
            "dst/a/b/c.txt",
            "dst/y",
            "dst/y/z.txt"
        ]
    );
    // Parents are created with their source metadata.
    meta(&plan, "dst/a/b", "dir", 0o750, (0, 0));
    let mut o = op(&["a/*/*.md"], "/p/");
    o.parents = true;
    let plan = t.plan(&o);
    assert_eq!(paths(&plan), ["p", "p/a", "p/a/b", "p/a/b/d.md"]);
}

#[test]
fn link_ignores_the_parent_rootfs() {
    let t = Trees::with_rootfs();
    t.file("f", "f", 0o644);
    let mut o = op(&["f"], "/lib/f");
    o.link = true;
    let plan = t.plan_onto_root(&o);
    assert_eq!(paths(&plan), ["lib", "lib/f"]);
    meta(&plan, "lib", "dir", 0o755, (0, 0));
    // --chown names still come from the parent's passwd.
    o.chown = UserSpec::parse("app");
    let plan = t.plan_onto_root(&o);
    meta(&plan, "lib/f", "file", 0o644, (1000, 1000));
}

#[test]
fn symlinks_are_kept_inside_directories_and_followed_when_named() {
    let t = Trees::new();
    t.file("d/real.txt", "real", 0o644);
    t.symlink("real.txt", "d/alias");
    t.symlink("/etc/passwd", "d/hostlink");
    t.symlink("d/real.txt", "named");
    t.symlink("d", "dirlink");
    let plan = t.plan(&op(&["d"], "/d/"));
    let alias = &get(&plan, "d/alias").entry;
    assert_eq!(alias.kind, symlink_to("real.txt"));
    // A symlink inside a copied directory is data, whatever it points at.
    assert_eq!(
        get(&plan, "d/hostlink").entry.kind,
        symlink_to("/etc/passwd")
    );
    let plan = t.plan(&op(&["named", "dirlink"], "/n/"));
    assert_eq!(
        paths(&plan),
        ["n", "n/alias", "n/hostlink", "n/named", "n/real.txt"]
    );
    assert!(get(&plan, "n/named").entry.is_file());
    assert_eq!(bytes(get(&plan, "n/named")), b"real");
}

#[test]
fn hard_links_between_copied_files_are_kept() {
    let t = Trees::new();
    t.file("d/a", "same", 0o644);
    fs::hard_link(t.ctx().join("d/a"), t.ctx().join("d/b")).expect("link");
    let plan = t.plan(&op(&["d"], "/h/"));
    assert!(get(&plan, "h/a").entry.is_file());
    assert_eq!(
        get(&plan, "h/b").entry.kind,
        EntryKind::HardLink {
            target: "h/a".into()
        }
    );
}

#[test]
fn from_tree_keeps_owners_and_resolves_absolute_links_in_root() {
    let tree = tempfile::tempdir().expect("tempdir");
    file(tree.path(), "app/bin", "bin", 0o755);
    std::os::unix::fs::chown(tree.path().join("app/bin"), Some(4321), Some(99)).expect("chown");
    symlink("/app/bin", tree.path().join("current")).expect("symlink");
    let mut o = op(&["/current"], "/usr/local/bin/tool");
    o.from = FsInput::Image("stage".parse().expect("ref"));
    let plan = plan_in(&o, SourceRoot::Tree(tree.path()), None).expect("plan");
    meta(&plan, "usr/local/bin/tool", "file", 0o755, (4321, 99));
    assert_eq!(bytes(get(&plan, "usr/local/bin/tool")), b"bin");
    // The whole tree: `/` copies the root's contents, links stay links.
    o.sources = vec![CopySource::Path("/".into())];
    o.dest = "/out/".into();
    let plan = plan_in(&o, SourceRoot::Tree(tree.path()), None).expect("plan");
    assert_eq!(
        paths(&plan),
        ["out", "out/app", "out/app/bin", "out/current"]
    );
    meta(&plan, "out/app/bin", "file", 0o755, (4321, 99));
}

#[test]
fn heredoc_sources_are_0644_files() {
    let mut o = op(&[], "/etc/motd");
    o.sources = vec![CopySource::Heredoc {
        name: "EOF".into(),
        content: "hello\nworld\n".into(),
    }];
    let plan = plan_in(&o, SourceRoot::Empty, None).expect("plan");
    assert_eq!(paths(&plan), ["etc", "etc/motd"]);
    meta(&plan, "etc/motd", "file", 0o644, (0, 0));
    assert_eq!(bytes(get(&plan, "etc/motd")), b"hello\nworld\n");
    o.dest = "/etc/".into();
    let plan = plan_in(&o, SourceRoot::Empty, None).expect("plan");
    assert_eq!(paths(&plan), ["etc", "etc/EOF"]);
    let err = plan_in(&op(&["x"], "/"), SourceRoot::Empty, None).expect_err("no context");
    assert!(matches!(err, CopyError::NoContext { .. }));
}

#[test]
fn hostile_sources_outside_the_context_are_rejected() {
    let t = Trees::new();
    t.file("ok", "ok", 0o644);
    t.symlink("/etc/passwd", "abs");
    t.symlink("../../../../etc/passwd", "rel");
    let err = t
        .try_plan(&op(&["../etc/passwd"], "/"))
        .expect_err("outside");
    assert!(matches!(err, CopyError::OutsideContext { .. }), "{err}");
    for name in ["abs", "rel"] {
        let err = t.try_plan(&op(&[name], "/x")).expect_err("escape");
        assert!(
            matches!(err, CopyError::SymlinkEscape { .. }),
            "{name}: {err}"
        );
    }
}

/// A tar with a directory, a file (mode 0750, uid 7, mtime OLD) and a symlink.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    append_ustar(&mut b, "pkg/", b"", |h| {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(OLD as u64);
    });
    append_ustar(&mut b, "pkg/run", b"payload", |h| {
        h.set_mode(0o750);
        h.set_uid(7);
        h.set_gid(8);
        h.set_mtime(OLD as u64);
    });
    append_ustar(&mut b, "pkg/link", b"", |h| {
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_link_name("run").expect("link");
    });
    b.into_inner().expect("finish")
}

/// Append a ustar entry at `path` holding `data`; `set` fills in its type, mode, owner and time.
fn append_ustar(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    set: impl FnOnce(&mut tar::Header),
) {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).expect("path");
    set(&mut h);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).expect("append");
}

fn compress(kind: &str, data: &[u8]) -> Vec<u8> {
    match kind {
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("gz");
            e.finish().expect("gz")
        }
        "bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).expect("bz2");
            e.finish().expect("bz2")
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).expect("xz");
            e.finish().expect("xz")
        }
        "zst" => zstd::encode_all(data, 3).expect("zstd"),
        _ => data.to_vec(),
    }
}

#[test]
fn add_unpacks_local_archives_detected_by_content() {
    let t = Trees::new();
    let tarball = sample_tar();
    // Names that lie about the format: detection is by content only.
    let cases = [
        ("gz", "a.tar.gz"),
        ("xz", "b.tar.xz"),
        ("bz2", "c.tar.bz2"),
        ("zst", "d.tar.zst"),
        ("plain", "e.bin"),
    ];
    for (kind, name) in cases {
        fs::write(t.ctx().join(name), compress(kind, &tarball)).expect("write");
        let plan = t.try_plan(&add_op(&[name], "/opt")).expect(kind);
        assert_eq!(
            paths(&plan),
            ["opt", "opt/pkg", "opt/pkg/link", "opt/pkg/run"],
            "{kind}"
        );
        meta(&plan, "opt/pkg/run", "file", 0o750, (7, 8));
        assert_eq!(get(&plan, "opt/pkg/run").entry.mtime, OLD, "{kind}");
        assert_eq!(bytes(get(&plan, "opt/pkg/run")), b"payload", "{kind}");
        assert_eq!(
            get(&plan, "opt/pkg/link").entry.kind,
            symlink_to("run"),
            "{kind}"
        );
    }
    // `--unpack=false` keeps the archive as a file.
    let mut o = add_op(&["a.tar.gz"], "/opt/");
    o.kind = add_kind(Some(false));
    let plan = t.try_plan(&o).expect("no unpack");
    assert_eq!(paths(&plan), ["opt", "opt/a.tar.gz"]);
    // COPY never unpacks; a compressed non-tar is just a file.
    let plan = t.try_plan(&op(&["a.tar.gz"], "/opt/")).expect("copy");
    assert_eq!(paths(&plan), ["opt", "opt/a.tar.gz"]);
    fs::write(t.ctx().join("t.gz"), compress("gz", b"just text")).expect("write");
    let plan = t.try_plan(&add_op(&["t.gz"], "/opt/")).expect("add");
    assert_eq!(paths(&plan), ["opt", "opt/t.gz"]);
}

#[test]
fn add_refuses_archive_entries_climbing_out() {
    let t = Trees::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_old();
    let name = b"../evil";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_size(4);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).expect("append");
    fs::write(t.ctx().join("bad.tar"), b.into_inner().expect("tar")).expect("write");
    let err = t
        .try_plan(&add_op(&["bad.tar"], "/x/"))
        .expect_err("hostile");
    assert!(matches!(err, CopyError::Archive(_)), "{err}");
    assert!(err.to_string().contains("../evil"), "{err}");
}

/// Serve `body` on 127.0.0.1 for `n` requests, with a Last-Modified header.
fn serve(body: &'static [u8], n: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => req.extend_from_slice(&buf[..k]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_url_is_a_0600_file_with_last_modified() {
    let base = serve(b"remote content", 3);
    let url = format!("{base}/files/tool.txt?x=1");
    let fetcher = HttpFetcher::new();
    let mut o = add_op(&[], "/dl/");
    o.sources = vec![CopySource::Url(url.clone())];
    let plan = plan_fetched(&o, &fetcher).expect("plan");
    assert_eq!(paths(&plan), ["dl", "dl/tool.txt"]);
    meta(&plan, "dl/tool.txt", "file", 0o600, (0, 0));
    assert_eq!(get(&plan, "dl/tool.txt").entry.mtime, 1_445_412_480);
    assert_eq!(bytes(get(&plan, "dl/tool.txt")), b"remote content");
    // --checksum: the right digest passes, a wrong one names both.
    o.checksum = Some(rbuild_layers::digest::Digest::of(b"remote content"));
    plan_fetched(&o, &fetcher).expect("checksum ok");
    o.checksum = Some(rbuild_layers::digest::Digest::of(b"other"));
    let err = plan_fetched(&o, &fetcher).expect_err("mismatch");
    assert!(matches!(err, CopyError::ChecksumMismatch { .. }), "{err}");
}

/// What a layer entry looked like: kind, mode, uid, gid, mtime, content.
type Seen = (String, u32, u32, u32, i64, Vec<u8>);

#[test]
fn layer_blob_holds_the_planned_bytes() {
    let t = Trees::new();
    let store_dir = tempfile::tempdir().expect("tempdir");
    t.file("d/a.txt", "alpha", 0o640);
    t.symlink("a.txt", "d/l");
    let mut o = op(&["d"], "/app/");
    o.chown = UserSpec::parse("10:20");
    let plan = t.plan(&o);
    let store = BlobStore::ensure(store_dir.path()).expect("store");
    let info = plan
        .write_layer(&store, LayerOptions::default())
        .expect("layer");
    let blob = store.open_blob(&info.digest).expect("blob");
    let got: BTreeMap<String, Seen> = rbuild_layers::tar::read::read_all(blob)
        .expect("read")
        .into_iter()
        .map(|(e, data)| {
            (
                e.path.clone(),
                (
                    e.kind.name().to_string(),
                    e.mode,
                    e.uid,
                    e.gid,
                    e.mtime,
                    data,
                ),
            )
        })
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got["app"].1, 0o755);
    assert_eq!(
        got["app/a.txt"],
        ("file".into(), 0o640, 10, 20, 0, b"alpha".to_vec()),
        "mtime clamped to the default epoch 0"
    );
    assert_eq!(got["app/l"].0, "symlink");
    // The same inputs give the same layer (created-dir mtimes are clamped).
    let again = t
        .try_plan(&o)
        .expect("plan")
        .write_layer(&store, LayerOptions::default())
        .expect("layer");
    assert_eq!(again.digest, info.digest);
    assert_eq!(
        plan.content_digest().expect("digest"),
        t.try_plan(&o)
            .expect("plan")
            .content_digest()
            .expect("digest")
    );
}

#[test]
fn add_archive_follows_dest_symlinks_and_keeps_unnamed_dirs() {
    let t = Trees::with_rootfs();
    dir(t.root(), "opt", 0o701);
    // An archive naming only `lib/x.so` and `opt/tool`: its parents are not archive entries.
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("lib/x.so", &b"so"[..]), ("opt/tool", &b"t"[..])] {
        append_ustar(&mut b, name, data, |h| h.set_mode(0o755));
    }
    fs::write(t.ctx().join("a.tar"), b.into_inner().expect("tar")).expect("write");
    let plan = t.plan_onto_root(&add_op(&["a.tar"], "/"));
    assert_eq!(
        paths(&plan),
        ["opt", "opt/tool", "usr", "usr/lib", "usr/lib/x.so"]
    );
    meta(&plan, "opt", "dir", 0o701, (0, 0));
}

#[test]
fn copy_from_an_empty_stage_is_not_found() {
    let mut o = op(&["/x"], "/");
    o.from = FsInput::Image("scratch-stage".parse().expect("ref"));
    let err = plan_in(&o, SourceRoot::Empty, None).expect_err("empty");
    assert!(matches!(err, CopyError::NotFound { .. }), "{err}");
}

#[test]
fn directory_copy_gives_dest_the_source_mtime() {
    let t = Trees::new();
    t.file("src/a", "a", 0o644);
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    fs::File::open(t.ctx().join("src"))
        .expect("open dir")
        .set_modified(old)
        .expect("mtime");
    dir(t.root(), "app", 0o750);
    let plan = t.plan_onto_root(&op(&["src"], "/app"));
    // Existing dest keeps mode and owner, takes the source directory's mtime.
    meta(&plan, "app", "dir", 0o750, (0, 0));
    assert_eq!(get(&plan, "app").entry.mtime, 1_500_000_000);
    let plan = t.plan_onto_root(&op(&["src"], "/new"));
    meta(&plan, "new", "dir", 0o755, (0, 0));
    assert_eq!(get(&plan, "new").entry.mtime, 1_500_000_000);
}

#[test]
fn checksum_is_refused_where_buildkit_refuses_it() {
    let t = Trees::new();
    t.file("a", "a", 0o644);
    let digest = rbuild_layers::digest::Digest::of(b"a");
    let cases = [
        (op(&["a"], "/"), "checksum can't be specified for COPY"),
        (
            add_op(&["a", "a"], "/d/"),
            "checksum can't be specified for multiple sources",
        ),
        (
            add_op(&["a"], "/"),
            "checksum requires HTTP(S) or Git sources",
        ),
    ];
    for (mut o, want) in cases {
        o.checksum = Some(digest.clone());
        let err = t.try_plan(&o).expect_err(want);
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn link_with_chmod_copies_onto_the_parent() {
    let t = Trees::with_rootfs();
    t.file("f", "f", 0o644);
    let mut o = op(&["f"], "/lib/f");
    o.link = true;
    o.chmod = Some(Chmod::Octal(0o600));
    let plan = t.plan_onto_root(&o);
    assert_eq!(paths(&plan), ["usr", "usr/lib", "usr/lib/f"]);
    meta(&plan, "usr/lib/f", "file", 0o600, (0, 0));
}

/// The whole path through a build: COPY/ADD steps of a Dockerfile, the image unpacked by umoci.
#[test]
fn build_with_copy_and_add_unpacks_as_expected() {
    use crate::build_support::{build, store_with_busybox, text_request, umoci_unpack};
    use std::os::unix::fs::MetadataExt;

    let t = store_with_busybox();
    let ctx = t.dir.path().join("ctx");
    file(&ctx, "app/main.sh", "#!/bin/sh\necho hi\n", 0o755);
    file(&ctx, "app/data/cfg.txt", "k=v\n", 0o644);
    file(&ctx, "app/key.secret", "s3cret", 0o600);
    file(&ctx, ".dockerignore", "**/*.secret\n", 0o644);
    fs::write(ctx.join("pkg.tgz"), compress("gz", &sample_tar())).expect("archive");
    let text = "FROM busybox:test AS base\n\
                FROM busybox:test\n\
                WORKDIR /srv\n\
                COPY --chown=app:staff app/ ./app/\n\
                ADD pkg.tgz /opt/\n\
                COPY --from=base /bin/busybox /usr/local/bin/bb\n\
                COPY --chmod=0600 <<EOF /etc/note\nhello\nEOF\n";
    let (out, _) = build(&t.store, &text_request(Some(&ctx), text));
    let rootfs = umoci_unpack(&t.store, &out, &t.dir.path().join("check"));
    let md = |p: &str| fs::symlink_metadata(rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let main = md("srv/app/main.sh");
    assert_eq!(
        (main.mode() & 0o7777, main.uid(), main.gid()),
        (0o755, 1000, 50)
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("srv/app/data/cfg.txt")).expect("cfg"),
        "k=v\n"
    );
    assert!(
        !rootfs.join("srv/app/key.secret").exists(),
        "ignored file copied"
    );
    let run = md("opt/pkg/run");
    assert_eq!((run.mode() & 0o7777, run.uid(), run.gid()), (0o750, 7, 8));
    assert_eq!(
        fs::read(rootfs.join("opt/pkg/run")).expect("run"),
        b"payload"
    );
    assert_eq!(
        fs::read(rootfs.join("usr/local/bin/bb")).expect("bb"),
        fs::read(rootfs.join("bin/busybox")).expect("busybox")
    );
    let note = md("etc/note");
    assert_eq!(note.mode() & 0o7777, 0o600);
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/note")).expect("note"),
        "hello\n"
    );
    // Unchanged inputs: every step cached, same image.
    let (again, _) = build(&t.store, &text_request(Some(&ctx), text));
    assert_eq!(again.cached, again.steps);
    assert_eq!(again.manifest_digest, out.manifest_digest);
}

#[test]
fn build_reports_a_missing_source_at_its_line() {
    use crate::build_errors::step_failure;
    use crate::build_support::store_with_busybox;

    let t = store_with_busybox();
    let ctx = t.dir.path().join("ctx");
    file(&ctx, "a.txt", "a", 0o644);
    file(&ctx, ".dockerignore", "a.txt\n", 0o644);
    let text = "FROM busybox:test\n\nCOPY a.txt /a.txt\n";
    let (err, origin, _) = step_failure(&t, &ctx, text, "excluded source");
    let text = err.to_string();
    // The cache key is computed before the copy is planned, so the context hasher reports the
    // missing file first (without the rule; `plan_copy` names it, see
    // `dockerignore_hides_files_and_names_the_rule`).
    assert!(text.contains("\"/a.txt\": not found"), "{text}");
    assert_eq!(origin.start_line, 3);
}

#[test]
fn extended_attributes_are_copied() {
    let t = Trees::new();
    t.file("d/f", "f", 0o644);
    let f = t.ctx().join("d/f");
    rustix::fs::setxattr(&f, "user.origin", b"ctx", rustix::fs::XattrFlags::empty())
        .expect("set xattr");
    let plan = t.plan(&op(&["d"], "/x/"));
    let xattrs = &get(&plan, "x/f").entry.xattrs;
    assert_eq!(
        xattrs.get("user.origin").map(Vec::as_slice),
        Some(&b"ctx"[..])
    );
}

#[test]
fn add_url_archives_stay_files_unless_unpack_is_true() {
    let body: &'static [u8] = Box::leak(compress("gz", &sample_tar()).into_boxed_slice());
    let base = serve(body, 2);
    let fetcher = HttpFetcher::new();
    let mut o = add_op(&[], "/dl/pkg.tgz");
    o.sources = vec![CopySource::Url(format!("{base}/download"))];
    let plan = plan_fetched(&o, &fetcher).expect("plan");
    // A destination without `/` names the file.
    assert_eq!(paths(&plan), ["dl", "dl/pkg.tgz"]);
    assert_eq!(bytes(get(&plan, "dl/pkg.tgz")), body);
    o.kind = add_kind(Some(true));
    o.dest = "/dl/".into();
    let plan = plan_fetched(&o, &fetcher).expect("plan");
    assert_eq!(paths(&plan), ["dl", "dl/pkg", "dl/pkg/link", "dl/pkg/run"]);
}
