//! Users and groups: turning `USER` and `--chown` specs into numeric ids against a root
//! filesystem's `/etc/passwd` and `/etc/group`.
//!
//! [`resolve_user`] follows runc's `user.GetExecUser` as BuildKit calls it for RUN (`oci.GetUser`):
//!
//! - `uid:gid` with both parts numeric takes BuildKit's fast path: no file is read and there are
//!   no supplementary groups;
//! - otherwise the user is looked up in `/etc/passwd`, a numeric user by uid and a name by name
//!   (first match wins). A match gives uid, primary gid and home; a numeric user without an
//!   entry keeps gid 0 and home `/`; a name without an entry is an error naming the user and
//!   the file;
//! - an explicit group is looked up in `/etc/group` by name (or, when numeric, by gid, falling
//!   back to the number); a name without an entry is an error. Supplementary groups come only
//!   with the implicit form: every group whose member list names the matched user.
//!
//! [`resolve_chown`] follows BuildKit's file-op `readUser` for `COPY --chown`: a numeric user
//! means that uid and the same number as gid, a name takes uid and primary gid from
//! `/etc/passwd`, and an explicit group overrides the gid. It never yields supplementary groups.
//!
//! Files are read through [`crate::exec::sandbox::rootfs::secure_join`] and opened with
//! `O_NOFOLLOW`, so a symlinked `/etc/passwd` can never make the builder read a host file. A
//! missing file is treated as empty, as runc does; malformed lines are skipped.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::exec::sandbox::rootfs::{secure_join, RootfsError};
use crate::graph::{IdSpec, UserSpec};

/// The passwd file, as a container path.
pub const PASSWD: &str = "/etc/passwd";
/// The group file, as a container path.
pub const GROUP: &str = "/etc/group";

/// A user resolved to numeric ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership), in file order.
    pub additional_gids: Vec<u32>,
    /// The home directory from `/etc/passwd`, when the user has an entry.
    pub home: Option<String>,
}

impl ResolvedUser {
    /// root: 0:0, no supplementary groups, no known home.
    pub fn root() -> Self {
        ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: None,
        }
    }
}

/// A user or group could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// A user name has no entry in the passwd file.
    #[error("unable to find user {name}: no matching entries in passwd file {file}")]
    UserNotFound {
        /// The user name.
        name: String,
        /// The file searched (container path).
        file: String,
    },
    /// A group name has no entry in the group file.
    #[error("unable to find group {name}: no matching entries in group file {file}")]
    GroupNotFound {
        /// The group name.
        name: String,
        /// The file searched (container path).
        file: String,
    },
    /// A name was given but there is no root filesystem to look it up in.
    #[error("unable to find {what} {name}: the filesystem is empty (no {file})")]
    NoRootfs {
        /// `user` or `group`.
        what: &'static str,
        /// The name.
        name: String,
        /// The file that would have been read.
        file: String,
    },
    /// Reading a user database failed.
    #[error("read {path}: {source}")]
    Read {
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The path of a user database could not be resolved inside the root.
    #[error("resolve {file}: {source}")]
    Resolve {
        /// The container path.
        file: String,
        /// The cause.
        #[source]
        source: RootfsError,
    },
}

type Result<T> = std::result::Result<T, UserError>;

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The `:`-separated fields of each line of a passwd or group file, blank lines and `#`
/// comments skipped.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        Some(line.split(':').collect())
    })
}

/// Parse passwd text (`name:pw:uid:gid:gecos:home:shell`), skipping comments and bad lines.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map_or(String::new(), |s| s.to_string()),
            })
        })
        .collect()
}

/// Parse group text (`name:pw:gid:member,member`), skipping comments and bad lines.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Read a user database inside `root`; `None` when it does not exist.
fn read_db(root: &Path, file: &str) -> Result<Option<String>> {
    let path = secure_join(root, file).map_err(|source| UserError::Resolve {
        file: file.to_string(),
        source,
    })?;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path);
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(UserError::Read { path, source }),
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(|source| UserError::Read {
            path: path.clone(),
            source,
        })?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The two databases, read lazily and at most once.
struct Databases<'a> {
    root: Option<&'a Path>,
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

impl<'a> Databases<'a> {
    fn new(root: Option<&'a Path>) -> Self {
        Databases {
            root,
            passwd: None,
            group: None,
        }
    }

    fn passwd(&mut self) -> Result<&[PasswdEntry]> {
        if self.passwd.is_none() {
            let text = match self.root {
                Some(root) => read_db(root, PASSWD)?.unwrap_or_default(),
                None => String::new(),
            };
            self.passwd = Some(parse_passwd(&text));
        }
        Ok(self.passwd.as_deref().unwrap_or_default())
    }

    fn group(&mut self) -> Result<&[GroupEntry]> {
        if self.group.is_none() {
            let text = match self.root {
                Some(root) => read_db(root, GROUP)?.unwrap_or_default(),
                None => String::new(),
            };
            self.group = Some(parse_group(&text));
        }
        Ok(self.group.as_deref().unwrap_or_default())
    }

    fn not_found_user(&self, name: &str) -> UserError {
        match self.root {
            Some(_) => UserError::UserNotFound {
                name: name.to_string(),
                file: PASSWD.to_string(),
            },
            None => UserError::NoRootfs {
                what: "user",
                name: name.to_string(),
                file: PASSWD.to_string(),
            },
        }
    }

    fn not_found_group(&self, name: &str) -> UserError {
        match self.root {
            Some(_) => UserError::GroupNotFound {
                name: name.to_string(),
                file: GROUP.to_string(),
            },
            None => UserError::NoRootfs {
                what: "group",
                name: name.to_string(),
                file: GROUP.to_string(),
            },
        }
    }

    /// The gid of an explicit group: by name, or by number (entry or not).
    fn group_id(&mut self, group: &IdSpec) -> Result<u32> {
        match group {
            IdSpec::Id(n) => Ok(*n),
            IdSpec::Name(name) => {
                let found = self
                    .group()?
                    .iter()
                    .find(|g| &g.name == name)
                    .map(|g| g.gid);
                found.ok_or_else(|| self.not_found_group(name))
            }
        }
    }
}

/// Resolve a RUN `USER` against the rootfs's `/etc/passwd` and `/etc/group`, as runc does.
pub fn resolve_user(rootfs: Option<&Path>, spec: &UserSpec) -> Result<ResolvedUser> {
    // BuildKit's fast path: `uid:gid`, both numeric, reads nothing.
    if let (IdSpec::Id(uid), Some(IdSpec::Id(gid))) = (&spec.user, &spec.group) {
        return Ok(ResolvedUser {
            uid: *uid,
            gid: *gid,
            additional_gids: Vec::new(),
            home: None,
        });
    }
    let mut db = Databases::new(rootfs);
    let matched = db
        .passwd()?
        .iter()
        .find(|u| match &spec.user {
            IdSpec::Id(n) => u.uid == *n,
            IdSpec::Name(name) => &u.name == name,
        })
        .cloned();
    let mut user = match (&matched, &spec.user) {
        (Some(u), _) => ResolvedUser {
            uid: u.uid,
            gid: u.gid,
            additional_gids: Vec::new(),
            home: Some(u.home.clone()),
        },
        (None, IdSpec::Id(n)) => ResolvedUser {
            uid: *n,
            ..ResolvedUser::root()
        },
        (None, IdSpec::Name(name)) => return Err(db.not_found_user(name)),
    };
    match &spec.group {
        Some(group) => user.gid = db.group_id(group)?,
        None => {
            if let Some(u) = &matched {
                user.additional_gids = db
                    .group()?
                    .iter()
                    .filter(|g| g.members.iter().any(|m| m == &u.name))
                    .map(|g| g.gid)
                    .collect();
            }
        }
    }
    Ok(user)
}

/// Resolve a `COPY --chown` owner to `(uid, gid)`, as BuildKit's file ops do (no
/// supplementary groups; a numeric user without a group uses its uid as gid).
pub fn resolve_chown(rootfs: Option<&Path>, spec: &UserSpec) -> Result<(u32, u32)> {
    let mut db = Databases::new(rootfs);
    let (uid, mut gid) = match &spec.user {
        IdSpec::Id(n) => (*n, *n),
        IdSpec::Name(name) => {
            let found = db
                .passwd()?
                .iter()
                .find(|u| &u.name == name)
                .map(|u| (u.uid, u.gid));
            found.ok_or_else(|| db.not_found_user(name))?
        }
    };
    if let Some(group) = &spec.group {
        gid = db.group_id(group)?;
    }
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "# comment\nroot:x:0:0:root:/root:/bin/sh\n\
        app:x:1000:1000:app:/home/app:/bin/sh\nbroken:x:notanumber:1\n\
        dup:x:1000:7:second:/dup:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n";
    const GROUP_TEXT: &str = "root:x:0:\nstaff:x:50:app,web\napp:x:1000:\n\
        extra:x:60: app \nweb:x:33:\n";

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("etc")).expect("mkdir");
        std::fs::write(d.path().join("etc/passwd"), PASSWD_TEXT).expect("write");
        std::fs::write(d.path().join("etc/group"), GROUP_TEXT).expect("write");
        d
    }

    fn spec(s: &str) -> UserSpec {
        UserSpec::parse(s).expect("valid spec")
    }

    #[test]
    fn resolve_user_table() {
        let d = rootfs();
        type Case = (&'static str, u32, u32, &'static [u32], Option<&'static str>);
        let cases: &[Case] = &[
            ("root", 0, 0, &[], Some("/root")),
            ("app", 1000, 1000, &[50, 60], Some("/home/app")),
            ("1000", 1000, 1000, &[50, 60], Some("/home/app")),
            ("web", 33, 33, &[50], Some("/var/www")),
            ("app:staff", 1000, 50, &[], Some("/home/app")),
            ("app:50", 1000, 50, &[], Some("/home/app")),
            ("app:777", 1000, 777, &[], Some("/home/app")),
            ("4242", 4242, 0, &[], None),
            ("4242:staff", 4242, 50, &[], None),
            ("1000:1000", 1000, 1000, &[], None),
            ("0:0", 0, 0, &[], None),
        ];
        for (text, uid, gid, groups, home) in cases {
            let got = resolve_user(Some(d.path()), &spec(text)).expect(text);
            assert_eq!(
                (
                    got.uid,
                    got.gid,
                    got.additional_gids.as_slice(),
                    got.home.as_deref()
                ),
                (*uid, *gid, *groups, *home),
                "{text}"
            );
        }
    }

    #[test]
    fn resolve_chown_table() {
        let d = rootfs();
        let cases: &[(&str, (u32, u32))] = &[
            ("app", (1000, 1000)),
            ("1000", (1000, 1000)),
            ("4242", (4242, 4242)),
            ("app:staff", (1000, 50)),
            ("web:0", (33, 0)),
            ("7:app", (7, 1000)),
        ];
        for (text, want) in cases {
            let got = resolve_chown(Some(d.path()), &spec(text)).expect(text);
            assert_eq!(got, *want, "{text}");
        }
    }

    #[test]
    fn missing_names_are_errors_naming_name_and_file() {
        let d = rootfs();
        let empty = tempfile::tempdir().expect("tempdir");
        let cases: Vec<(&str, Option<&Path>, &str)> = vec![
            (
                "nobody",
                Some(d.path()),
                "unable to find user nobody: no matching entries in passwd file /etc/passwd",
            ),
            (
                "app:nogroup",
                Some(d.path()),
                "unable to find group nogroup: no matching entries in group file /etc/group",
            ),
            (
                "app",
                Some(empty.path()),
                "unable to find user app: no matching entries in passwd file /etc/passwd",
            ),
            (
                "app",
                None,
                "unable to find user app: the filesystem is empty (no /etc/passwd)",
            ),
            ("1:wheel", None, "unable to find group wheel"),
        ];
        for (text, root, want) in cases {
            let err = resolve_user(root, &spec(text)).expect_err(text);
            assert!(err.to_string().contains(want), "{text}: {err}");
            let err = resolve_chown(root, &spec(text)).expect_err(text);
            assert!(err.to_string().contains(want), "{text} (chown): {err}");
        }
    }

    #[test]
    fn numeric_ids_need_no_files() {
        for (text, want) in [("0", (0, 0)), ("5:6", (5, 6)), ("1000", (1000, 0))] {
            let got = resolve_user(None, &spec(text)).expect(text);
            assert_eq!((got.uid, got.gid), want, "{text}");
        }
        assert_eq!(resolve_chown(None, &spec("12")).expect("numeric"), (12, 12));
    }

    #[test]
    fn symlinked_passwd_never_leaves_the_rootfs() {
        let d = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            outside.path().join("passwd"),
            "evil:x:6666:6666::/:/bin/sh\n",
        )
        .expect("write");
        std::fs::create_dir(d.path().join("etc")).expect("mkdir");
        std::os::unix::fs::symlink(outside.path().join("passwd"), d.path().join("etc/passwd"))
            .expect("symlink");
        // The absolute link target is resolved inside the root, where it does not exist.
        let err = resolve_user(Some(d.path()), &spec("evil")).expect_err("not found");
        assert!(matches!(err, UserError::UserNotFound { .. }), "{err}");
        // A relative link inside the root is followed.
        std::fs::remove_file(d.path().join("etc/passwd")).expect("rm");
        std::fs::write(d.path().join("etc/real"), "ok:x:5:6::/h:/bin/sh\n").expect("write");
        std::os::unix::fs::symlink("real", d.path().join("etc/passwd")).expect("symlink");
        let got = resolve_user(Some(d.path()), &spec("ok")).expect("found");
        assert_eq!((got.uid, got.gid), (5, 6));
    }
}
