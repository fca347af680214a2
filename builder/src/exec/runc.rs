//! The runc executor: the same RUN request through any OCI runtime (`--runtime runc` or a path).
//!
//! Like BuildKit's `runcexecutor`, it writes a runtime bundle (a temporary directory with
//! `config.json`, generated with `oci_spec::runtime` types; the root is the prepared rootfs
//! itself) and runs `RUNTIME --root STATE run --bundle DIR ID` with stdin closed and stdout and
//! stderr streamed to the sink. The spec carries the same container the built-in sandbox makes
//! (see `sandbox`): PID, IPC, UTS and mount namespaces (network only for `--network=none`, where
//! runc brings `lo` up), `/proc`, `/dev`, `/dev/pts`, `/dev/shm`, read-only `/sys`, read-only
//! binds of the generated `/etc/hosts` and `/etc/resolv.conf`, the step's mounts, Docker's
//! capabilities, masked and read-only paths, `noNewPrivileges`, user, groups, environment,
//! working directory and host name.
//!
//! Each run gets a unique container id and its own state directory; `runc delete -f` runs on
//! every path out (a guard's `Drop`), and cancellation is `runc kill ID KILL`, which takes the
//! whole PID namespace down. Mount points missing in the rootfs are created by us first and
//! cleaned after the run exactly as in the sandbox (`sandbox::rootfs::Stubs`).
//!
//! Deviation: runc reports a command killed by a signal as exit code 128+signal, so this
//! executor reports [`ExecError::ExitCode`] for it where the sandbox reports `Signalled`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use oci_spec::OciSpecError;

use crate::exec::sandbox::rootfs::{self, StubKind, StubRole, Stubs};
use crate::exec::sandbox::{caps, mounts, namespaces, spawn, RunReport};
use crate::exec::{Cancellation, ExecError, Executor, OutputSink, RunRequest};
use crate::graph::SecurityMode;

/// Building or writing the runtime bundle failed.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    /// A part of the OCI spec could not be built.
    #[error("build oci spec {part}: {source}")]
    Spec {
        /// Which part.
        part: &'static str,
        /// The builder's error.
        #[source]
        source: OciSpecError,
    },
    /// A capability name is unknown to `oci-spec`.
    #[error("unknown capability {name}")]
    Capability {
        /// The name.
        name: String,
    },
}

/// Options of the runc executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuncOptions {
    /// The runtime binary: `runc`, `crun`, or a path.
    pub runtime: PathBuf,
    /// Parent directory for bundles and runtime state (the system temp dir when `None`).
    pub work_dir: Option<PathBuf>,
    /// The host file copied into containers as `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
}

impl Default for RuncOptions {
    fn default() -> Self {
        Self {
            runtime: PathBuf::from("runc"),
            work_dir: None,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// Runs RUN commands through an OCI runtime.
#[derive(Debug, Clone, Default)]
pub struct RuncExecutor {
    options: RuncOptions,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A container id unique to this process and run.
fn container_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("rbuild-{}-{n}-{nanos:08x}", std::process::id())
}

fn spec_err(part: &'static str) -> impl FnOnce(OciSpecError) -> RuncError {
    move |source| RuncError::Spec { part, source }
}

fn cap_set(mask: u64) -> Result<HashSet<Capability>, RuncError> {
    caps::names(mask)
        .into_iter()
        .map(|name| {
            serde_json::from_value::<Capability>(serde_json::Value::String(name.to_string()))
                .map_err(|_| RuncError::Capability {
                    name: name.to_string(),
                })
        })
        .collect()
}

fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> Result<Mount, RuncError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_err("mount"))
}

/// The OCI runtime spec for `req`, with the generated `hosts` and `resolv.conf` files.
/// `bounding` is the bounding set available to the runtime (see `caps::current_bounding`).
pub fn build_spec(
    req: &RunRequest<'_>,
    hosts: &Path,
    resolv: &Path,
    bounding: u64,
) -> Result<Spec, RuncError> {
    let strict = req.security == SecurityMode::Sandbox;
    let keep = caps::kept(req.security, bounding);
    let granted = if req.uid == 0 { keep } else { 0 };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(cap_set(keep)?)
        .effective(cap_set(granted)?)
        .permitted(cap_set(granted)?)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(spec_err("capabilities"))?;
    let user = UserBuilder::default()
        .uid(req.uid)
        .gid(req.gid)
        .additional_gids(req.additional_gids.to_vec())
        .umask(0o022u32)
        .build()
        .map_err(spec_err("user"))?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(req.argv.to_vec())
        .env(
            req.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .cwd(req.cwd)
        .capabilities(capabilities)
        .no_new_privileges(strict)
        // Inherit the builder's limits, as the built-in sandbox does (oci-spec's default
        // would impose RLIMIT_NOFILE=1024).
        .rlimits(Vec::new())
        .build()
        .map_err(spec_err("process"))?;

    let sys_opts: &[&str] = if strict {
        &["nosuid", "noexec", "nodev", "ro"]
    } else {
        &["nosuid", "noexec", "nodev"]
    };
    let mut mounts_list = vec![
        mount(
            "/proc",
            "proc",
            Path::new("proc"),
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            Path::new("shm"),
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount("/sys", "sysfs", Path::new("sysfs"), sys_opts)?,
        mount("/etc/hosts", "bind", hosts, &["rbind", "ro"])?,
        mount("/etc/resolv.conf", "bind", resolv, &["rbind", "ro"])?,
    ];
    for m in req.mounts {
        let mode = if m.readonly { "ro" } else { "rw" };
        mounts_list.push(mount(&m.target, "bind", &m.source, &["rbind", mode])?);
    }

    let mut ns_types = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if namespaces::has_own_network(req.network) {
        ns_types.push(LinuxNamespaceType::Network);
    }
    let ns = ns_types
        .into_iter()
        .map(|t| {
            LinuxNamespaceBuilder::default()
                .typ(t)
                .build()
                .map_err(spec_err("namespace"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let to_strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Every list is set explicitly: the builder would fill unset ones from oci-spec's defaults.
    let (masked, readonly) = if strict {
        (
            to_strings(mounts::MASKED_PATHS),
            to_strings(mounts::READONLY_PATHS),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let linux = LinuxBuilder::default()
        .namespaces(ns)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .build()
        .map_err(spec_err("linux"))?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(req.rootfs)
                .readonly(false)
                .build()
                .map_err(spec_err("root"))?,
        )
        .hostname(req.hostname)
        .process(process)
        .mounts(mounts_list)
        .linux(linux)
        .build()
        .map_err(spec_err("spec"))
}

/// Deletes the container and its state on every path out.
struct Container<'a> {
    runtime: &'a Path,
    state: &'a Path,
    id: String,
}

impl Container<'_> {
    fn command(&self) -> Command {
        let mut c = Command::new(self.runtime);
        c.arg("--root").arg(self.state);
        c
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["delete", "-f", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl RuncExecutor {
    /// An executor with the given options.
    pub fn new(options: RuncOptions) -> Self {
        Self { options }
    }

    /// The options in use.
    pub fn options(&self) -> &RuncOptions {
        &self.options
    }

    /// Run `request` and report the paths created in the root filesystem as well.
    pub fn run_reporting(
        &self,
        request: &RunRequest<'_>,
        output: &dyn OutputSink,
        cancel: &Cancellation,
    ) -> RunReport {
        if cancel.is_cancelled() {
            return RunReport {
                result: Err(ExecError::Cancelled),
                created: vec![],
            };
        }
        let mut stubs = Stubs::new(request.rootfs);
        let result = self.run_in(request, output, cancel, &mut stubs);
        RunReport {
            result,
            created: stubs.clean(),
        }
    }

    fn run_in(
        &self,
        req: &RunRequest<'_>,
        output: &dyn OutputSink,
        cancel: &Cancellation,
        stubs: &mut Stubs,
    ) -> Result<(), ExecError> {
        let argv = req.argv.to_vec();
        let setup = |reason: String| ExecError::Setup {
            argv: argv.clone(),
            reason,
        };
        if req.argv.is_empty() {
            return Err(setup("empty command".into()));
        }
        let mut tmp = tempfile::Builder::new();
        tmp.prefix("rbuild-runc-");
        let bundle = match &self.options.work_dir {
            Some(dir) => tmp.tempdir_in(dir),
            None => tmp.tempdir(),
        }
        .map_err(|e| setup(format!("create bundle directory: {e}")))?;

        let points: [(&str, StubKind); 5] = [
            ("/proc", StubKind::Dir),
            ("/dev", StubKind::Dir),
            ("/sys", StubKind::Dir),
            ("/etc/hosts", StubKind::File),
            ("/etc/resolv.conf", StubKind::File),
        ];
        for (p, kind) in points {
            stubs
                .ensure(p, kind, StubRole::Sandbox)
                .map_err(|e| setup(e.to_string()))?;
        }
        let targets: Vec<String> = req
            .mounts
            .iter()
            .map(|m| rootfs::clean_path(&m.target))
            .collect();
        for (i, m) in req.mounts.iter().enumerate() {
            // runc creates a mount point nested in an earlier mount itself, in that mount.
            if rootfs::enclosing_mount(&targets, i).is_some() {
                continue;
            }
            let kind = if m.source.is_dir() {
                StubKind::Dir
            } else {
                StubKind::File
            };
            stubs
                .ensure(&m.target, kind, StubRole::MountTarget)
                .map_err(|e| setup(e.to_string()))?;
        }
        // runc creates a missing working directory below a mount itself, in that mount.
        let cwd = rootfs::clean_path(req.cwd);
        if !targets
            .iter()
            .any(|t| *t == cwd || rootfs::is_below(&cwd, t))
        {
            stubs
                .ensure(req.cwd, StubKind::Dir, StubRole::Workdir)
                .map_err(|e| setup(e.to_string()))?;
        }

        let hosts = bundle.path().join("hosts");
        let resolv = bundle.path().join("resolv.conf");
        let host_resolv = std::fs::read_to_string(&self.options.resolv_conf).unwrap_or_default();
        std::fs::write(&hosts, mounts::hosts_file(req.hostname))
            .and_then(|()| std::fs::write(&resolv, mounts::resolv_conf(&host_resolv, req.network)))
            .map_err(|e| {
                setup(format!(
                    "write bundle files in {}: {e}",
                    bundle.path().display()
                ))
            })?;
        let spec = build_spec(req, &hosts, &resolv, caps::current_bounding())
            .map_err(|e| setup(e.to_string()))?;
        let config = bundle.path().join("config.json");
        spec.save(&config)
            .map_err(|e| setup(format!("write {}: {e}", config.display())))?;
        let state = bundle.path().join("state");
        std::fs::create_dir(&state)
            .map_err(|e| setup(format!("create {}: {e}", state.display())))?;

        let container = Container {
            runtime: &self.options.runtime,
            state: &state,
            id: container_id(),
        };
        let mut child = container
            .command()
            .arg("run")
            .arg("--bundle")
            .arg(bundle.path())
            .arg(&container.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| setup(format!("start {}: {e}", self.options.runtime.display())))?;
        let mut on_cancel = |_: &mut std::process::Child| {
            let _ = container
                .command()
                .args(["kill", &container.id, "KILL"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        let pumped = spawn::pump(&mut child, None, output, cancel, &mut on_cancel);
        drop(container);
        let pumped = pumped
            .map_err(|e| setup(format!("wait for {}: {e}", self.options.runtime.display())))?;
        if pumped.cancelled {
            return Err(ExecError::Cancelled);
        }
        match (
            pumped.status.code(),
            std::os::unix::process::ExitStatusExt::signal(&pumped.status),
        ) {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(ExecError::ExitCode { argv, code }),
            (None, Some(signal)) => Err(ExecError::Signalled { argv, signal }),
            (None, None) => Err(setup(format!(
                "{} ended with {}",
                self.options.runtime.display(),
                pumped.status
            ))),
        }
    }
}

impl Executor for RuncExecutor {
    fn run(
        &self,
        request: &RunRequest<'_>,
        output: &dyn OutputSink,
        cancel: &Cancellation,
    ) -> Result<(), ExecError> {
        self.run_reporting(request, output, cancel).result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::PreparedMount;
    use crate::graph::NetworkMode;

    fn req<'a>(
        argv: &'a [String],
        mounts: &'a [PreparedMount],
        uid: u32,
        network: NetworkMode,
        security: SecurityMode,
    ) -> RunRequest<'a> {
        RunRequest {
            rootfs: Path::new("/r"),
            argv,
            env: &[],
            uid,
            gid: uid,
            additional_gids: &[],
            cwd: "/w",
            network,
            security,
            mounts,
            hostname: "h1",
        }
    }

    #[test]
    fn spec_table() {
        let argv = vec!["id".to_string()];
        let mounts = vec![PreparedMount {
            source: "/ctx".into(),
            target: "/src".into(),
            readonly: true,
        }];
        struct Case {
            name: &'static str,
            uid: u32,
            network: NetworkMode,
            security: SecurityMode,
            netns: bool,
            eff: usize,
            masked: bool,
        }
        let cases = [
            Case {
                name: "root none",
                uid: 0,
                network: NetworkMode::None,
                security: SecurityMode::Sandbox,
                netns: true,
                eff: 14,
                masked: true,
            },
            Case {
                name: "user host",
                uid: 1000,
                network: NetworkMode::Host,
                security: SecurityMode::Sandbox,
                netns: false,
                eff: 0,
                masked: true,
            },
            Case {
                name: "insecure",
                uid: 0,
                network: NetworkMode::Default,
                security: SecurityMode::Insecure,
                netns: false,
                eff: 41,
                masked: false,
            },
        ];
        for c in cases {
            let r = req(&argv, &mounts, c.uid, c.network, c.security);
            let spec = build_spec(
                &r,
                Path::new("/b/hosts"),
                Path::new("/b/resolv"),
                caps::all_mask(40),
            )
            .expect("spec builds");
            let json = serde_json::to_value(&spec).expect("serialize");
            let ns: Vec<&str> = json["linux"]["namespaces"]
                .as_array()
                .expect("namespaces")
                .iter()
                .filter_map(|n| n["type"].as_str())
                .collect();
            assert_eq!(ns.contains(&"network"), c.netns, "{}: {ns:?}", c.name);
            assert!(ns.contains(&"mount") && ns.contains(&"pid"), "{}", c.name);
            let eff = json["process"]["capabilities"]["effective"]
                .as_array()
                .map_or(0, Vec::len);
            assert_eq!(eff, c.eff, "{}", c.name);
            let masked = json["linux"]["maskedPaths"].as_array().map_or(0, Vec::len);
            assert_eq!(masked > 0, c.masked, "{}", c.name);
            assert_eq!(json["hostname"], "h1");
            assert_eq!(json["root"]["path"], "/r");
            assert_eq!(json["process"]["cwd"], "/w");
            let dests: Vec<&str> = json["mounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .filter_map(|m| m["destination"].as_str())
                .collect();
            assert_eq!(
                dests,
                [
                    "/proc",
                    "/dev",
                    "/dev/pts",
                    "/dev/shm",
                    "/sys",
                    "/etc/hosts",
                    "/etc/resolv.conf",
                    "/src"
                ],
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn container_ids_are_unique() {
        let a = container_id();
        let b = container_id();
        assert_ne!(a, b);
        assert!(a.starts_with("rbuild-"));
    }
}
