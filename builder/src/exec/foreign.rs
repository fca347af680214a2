//! Foreign-platform binaries: telling "this host cannot execute that program" apart from any
//! other failure to start a RUN command.
//!
//! BuildKit runs RUN steps of a foreign `--platform` through QEMU registered with the kernel's
//! `binfmt_misc`; without an emulator `execve` fails with `ENOEXEC` and runc prints a bare
//! "exec format error". rbuild checks first: the program a RUN starts (`argv[0]`, looked up in
//! the container's `PATH` as runc does) is resolved inside the root filesystem (symlinks
//! followed without ever leaving it), its ELF header gives the architecture it was built for,
//! and when that is not one the host runs natively and no enabled `binfmt_misc` handler's
//! magic and mask match the header, the step fails before anything starts, with a message
//! naming both platforms and the two ways out. The same explanation replaces an `ENOEXEC`
//! reported after the fact (an emulator that is registered but broken, or a host that lacks
//! the 32-bit mode its CPU family usually has).
//!
//! This module only reads files; it never registers emulators or changes the root filesystem.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use rbuild_dockerfile::lower::Platform;

use crate::exec::sandbox::helper::resolve_program;
use crate::exec::{ExecError, RunRequest};

/// Where the kernel lists `binfmt_misc` handlers.
pub const BINFMT_MISC_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// How many bytes of a program are read to match ELF headers and `binfmt_misc` magic.
const HEADER_LEN: usize = 128;

/// Symlinks followed at most while resolving a path inside a root (as Linux's `ELOOP` limit).
const MAX_LINKS: usize = 40;

/// The ELF machine numbers we name (`e_machine`, from the System V ABI and `<elf.h>`).
const EM_386: u16 = 3;
const EM_MIPS: u16 = 8;
const EM_PPC: u16 = 20;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;
const EM_LOONGARCH: u16 = 258;

/// A program the host cannot execute: it was built for another platform and no emulator is
/// registered for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignBinary {
    /// The program as the container names it, e.g. `/bin/sh`.
    pub program: String,
    /// The platform its ELF header says it was built for, e.g. `linux/arm64`.
    pub binary: Platform,
    /// This host's platform.
    pub host: Platform,
}

impl fmt::Display for ForeignBinary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this {host} host cannot run {binary} binaries ({program} is a {binary} program); \
             register an emulator for {binary} with binfmt_misc (e.g. install qemu-user-static, \
             or run `docker run --privileged --rm tonistiigi/binfmt --install all`) or build \
             for {host}",
            host = self.host,
            binary = self.binary,
            program = self.program,
        )
    }
}

/// The platform an ELF header names, when `header` starts with one we know.
pub fn elf_platform(header: &[u8]) -> Option<Platform> {
    if header.len() < 20 || !header.starts_with(b"\x7fELF") {
        return None;
    }
    let is_64 = header[4] == 2;
    let little = header[5] == 1;
    let bytes = [header[18], header[19]];
    let machine = if little {
        u16::from_le_bytes(bytes)
    } else {
        u16::from_be_bytes(bytes)
    };
    let arch = match (machine, is_64, little) {
        (EM_386, _, _) => "386",
        (EM_X86_64, _, _) => "amd64",
        (EM_AARCH64, _, _) => "arm64",
        (EM_ARM, _, _) => "arm",
        (EM_PPC64, _, true) => "ppc64le",
        (EM_PPC64, _, false) => "ppc64",
        (EM_PPC, _, _) => "ppc",
        (EM_S390, true, _) => "s390x",
        (EM_S390, false, _) => "s390",
        (EM_RISCV, true, _) => "riscv64",
        (EM_RISCV, false, _) => "riscv32",
        (EM_MIPS, true, true) => "mips64le",
        (EM_MIPS, true, false) => "mips64",
        (EM_MIPS, false, true) => "mipsle",
        (EM_MIPS, false, false) => "mips",
        (EM_LOONGARCH, _, _) => "loong64",
        _ => return None,
    };
    // The variant is left open: ELF flags do not say which one an image was published as.
    Some(Platform {
        os: "linux".to_string(),
        architecture: arch.to_string(),
        variant: None,
    })
}

/// True when `host` executes programs built for `arch` without an emulator (the same
/// architecture, or the 32-bit mode of a 64-bit CPU family).
pub fn runs_natively(host: &Platform, arch: &str) -> bool {
    host.architecture == arch
        || matches!(
            (host.architecture.as_str(), arch),
            ("amd64", "386") | ("arm64", "arm") | ("ppc64", "ppc") | ("s390x", "s390")
        )
}

/// One `binfmt_misc` handler of the magic kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinfmtHandler {
    /// The entry's name, e.g. `qemu-aarch64`.
    pub name: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// The interpreter it starts.
    pub interpreter: String,
    /// Where the magic starts in the file.
    pub offset: usize,
    /// The bytes to match.
    pub magic: Vec<u8>,
    /// The mask applied before comparing (all ones when absent).
    pub mask: Vec<u8>,
}

impl BinfmtHandler {
    /// Parse an entry as `/proc/sys/fs/binfmt_misc/NAME` shows it; `None` for extension
    /// handlers and unreadable text.
    pub fn parse(name: &str, text: &str) -> Option<BinfmtHandler> {
        let mut h = BinfmtHandler {
            name: name.to_string(),
            enabled: false,
            interpreter: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in text.lines() {
            let line = line.trim();
            match line.split_once(' ') {
                None if line == "enabled" => h.enabled = true,
                Some(("interpreter", v)) => h.interpreter = v.trim().to_string(),
                Some(("offset", v)) => h.offset = v.trim().parse().ok()?,
                Some(("magic", v)) => h.magic = hex_bytes(v.trim())?,
                Some(("mask", v)) => h.mask = hex_bytes(v.trim())?,
                _ => {}
            }
        }
        if h.magic.is_empty() {
            return None;
        }
        if h.mask.is_empty() {
            h.mask = vec![0xff; h.magic.len()];
        }
        Some(h)
    }

    /// True when the handler is enabled and its masked magic matches `header`.
    pub fn matches(&self, header: &[u8]) -> bool {
        if !self.enabled || self.mask.len() != self.magic.len() {
            return false;
        }
        let Some(window) = header.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        window
            .iter()
            .zip(&self.magic)
            .zip(&self.mask)
            .all(|((b, m), k)| b & k == m & k)
    }
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The enabled-or-not magic handlers registered in `dir` (sorted by name); none when
/// `binfmt_misc` is not mounted or is switched off.
pub fn binfmt_handlers(dir: &Path) -> Vec<BinfmtHandler> {
    let status = fs::read_to_string(dir.join("status")).unwrap_or_default();
    if status.trim() != "enabled" {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "status" && n != "register")
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|n| {
            let text = fs::read_to_string(dir.join(n)).ok()?;
            BinfmtHandler::parse(n, &text)
        })
        .collect()
}

/// Resolve the absolute container path `path` to a host path under `root`, following
/// symlinks the way the container would see them (an absolute target restarts at `root`,
/// `..` never climbs above it).
pub fn resolve_in_root(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut pending: Vec<PathBuf> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut inside = PathBuf::new();
    let mut links = 0usize;
    while let Some(part) = pending.pop() {
        if part.as_os_str() == ".." {
            inside.pop();
            continue;
        }
        let candidate = inside.join(&part);
        let host = root.join(&candidate);
        let meta = fs::symlink_metadata(&host).ok()?;
        if !meta.file_type().is_symlink() {
            inside = candidate;
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return None;
        }
        let target = fs::read_link(&host).ok()?;
        if target.is_absolute() {
            inside = PathBuf::new();
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(n) => pending.push(PathBuf::from(n)),
                Component::ParentDir => pending.push(PathBuf::from("..")),
                _ => {}
            }
        }
    }
    Some(root.join(inside))
}

/// The first bytes of the program a command starts, with its container path.
fn program_header(
    rootfs: &Path,
    argv: &[String],
    env: &[(String, String)],
) -> Option<(String, Vec<u8>)> {
    let argv0 = argv.first()?;
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let in_root = |p: &Path| -> Option<PathBuf> {
        let host = resolve_in_root(rootfs, p)?;
        fs::metadata(&host).ok()?.is_file().then_some(host)
    };
    let program = resolve_program(argv0, &env, |p| in_root(p).is_some())?;
    if !program.is_absolute() {
        return None;
    }
    let host = in_root(&program)?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    fs::File::open(&host)
        .ok()?
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .ok()?;
    Some((program.display().to_string(), header))
}

/// Check before running that `host` can execute the program `argv` starts in `rootfs`;
/// `Err` names a foreign binary no handler in `binfmt_dir` emulates. Anything that cannot be
/// inspected (a missing program, a script) passes: the run itself then reports it.
pub fn check_runnable(
    rootfs: &Path,
    argv: &[String],
    env: &[(String, String)],
    host: &Platform,
    binfmt_dir: &Path,
) -> Result<(), Box<ForeignBinary>> {
    let Some((program, header)) = program_header(rootfs, argv, env) else {
        return Ok(());
    };
    let Some(binary) = elf_platform(&header) else {
        return Ok(());
    };
    if runs_natively(host, &binary.architecture)
        || binfmt_handlers(binfmt_dir)
            .iter()
            .any(|h| h.matches(&header))
    {
        return Ok(());
    }
    Err(Box::new(ForeignBinary {
        program,
        binary,
        host: host.clone(),
    }))
}

/// Explain a start failure: when `reason` is an `ENOEXEC` ("exec format error") and the
/// program is an ELF file of another platform, the [`ForeignBinary`] message; else `None`.
pub fn explain_exec_failure(
    rootfs: &Path,
    argv: &[String],
    env: &[(String, String)],
    host: &Platform,
    reason: &str,
) -> Option<String> {
    let enoexec = std::io::Error::from_raw_os_error(libc::ENOEXEC).to_string();
    if !reason.contains(&enoexec) && !reason.contains("exec format error") {
        return None;
    }
    let (program, header) = program_header(rootfs, argv, env)?;
    let binary = elf_platform(&header)?;
    if binary.architecture == host.architecture {
        return None;
    }
    Some(format!(
        "{}: {reason}",
        ForeignBinary {
            program,
            binary,
            host: host.clone(),
        }
    ))
}

/// Run `run` for `request` only when this host can execute its program (see
/// [`check_runnable`]), and explain an `ENOEXEC` it reports; both as [`ExecError::Setup`], so
/// the step's error says which platform is missing and what to do.
pub fn guarded(
    request: &RunRequest<'_>,
    run: impl FnOnce() -> Result<(), ExecError>,
) -> Result<(), ExecError> {
    let host = Platform::host();
    let setup = |reason: String| ExecError::Setup {
        argv: request.argv.to_vec(),
        reason,
    };
    check_runnable(
        request.rootfs,
        request.argv,
        request.env,
        &host,
        Path::new(BINFMT_MISC_DIR),
    )
    .map_err(|f| setup(f.to_string()))?;
    match run() {
        Err(ExecError::Setup { argv, reason }) => {
            let reason = explain_exec_failure(request.rootfs, &argv, request.env, &host, &reason)
                .unwrap_or(reason);
            Err(ExecError::Setup { argv, reason })
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF header: class, data, machine.
    fn elf(is_64: bool, little: bool, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = if is_64 { 2 } else { 1 };
        h[5] = if little { 1 } else { 2 };
        h[6] = 1;
        // e_type: ET_EXEC, in the file's byte order (binfmt magic checks it).
        h[if little { 16 } else { 17 }] = 2;
        let m = if little {
            machine.to_le_bytes()
        } else {
            machine.to_be_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    fn linux(arch: &str) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    #[test]
    fn elf_machines_name_platforms() {
        let cases = [
            (elf(true, true, EM_X86_64), Some("amd64")),
            (elf(false, true, EM_386), Some("386")),
            (elf(true, true, EM_AARCH64), Some("arm64")),
            (elf(false, true, EM_ARM), Some("arm")),
            (elf(true, true, EM_PPC64), Some("ppc64le")),
            (elf(true, false, EM_PPC64), Some("ppc64")),
            (elf(true, false, EM_S390), Some("s390x")),
            (elf(true, true, EM_RISCV), Some("riscv64")),
            (elf(true, true, EM_MIPS), Some("mips64le")),
            (elf(true, true, 0x1234), None),
            (b"#!/bin/sh\n".to_vec(), None),
            (b"\x7fELF".to_vec(), None),
        ];
        for (header, want) in cases {
            assert_eq!(
                elf_platform(&header).map(|p| p.architecture),
                want.map(str::to_string),
                "{header:?}"
            );
        }
    }

    #[test]
    fn native_execution_covers_32_bit_modes() {
        let cases = [
            ("amd64", "amd64", true),
            ("amd64", "386", true),
            ("amd64", "arm64", false),
            ("arm64", "arm", true),
            ("arm64", "amd64", false),
            ("s390x", "s390", true),
        ];
        for (host, arch, want) in cases {
            assert_eq!(runs_natively(&linux(host), arch), want, "{host} {arch}");
        }
    }

    #[test]
    fn binfmt_entries_parse_and_match() {
        let qemu = "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\noffset 0\n\
                    magic 7f454c460201010000000000000000000200b700\n\
                    mask ffffffffffffff00fffffffffffffffffeffffff\n";
        let h = BinfmtHandler::parse("qemu-aarch64", qemu).expect("magic entry");
        assert_eq!(h.interpreter, "/usr/bin/qemu-aarch64-static");
        let cases = [
            (elf(true, true, EM_AARCH64), true),
            (elf(true, true, EM_X86_64), false),
            (b"\x7fELF".to_vec(), false),
        ];
        for (header, want) in cases {
            assert_eq!(h.matches(&header), want, "{header:?}");
        }
        let disabled = qemu.replacen("enabled", "disabled", 1);
        let off = BinfmtHandler::parse("qemu-aarch64", &disabled).expect("entry");
        assert!(!off.matches(&elf(true, true, EM_AARCH64)));
        assert!(BinfmtHandler::parse("exe", "enabled\nextension .exe\n").is_none());
        assert!(BinfmtHandler::parse("bad", "enabled\nmagic 7f4\n").is_none());
    }

    #[test]
    fn programs_resolve_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).expect("bin");
        fs::create_dir_all(root.join("usr/bin")).expect("usr/bin");
        fs::write(root.join("bin/busybox"), elf(true, true, EM_AARCH64)).expect("busybox");
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("sh link");
        std::os::unix::fs::symlink("/bin/sh", root.join("usr/bin/env")).expect("abs link");
        std::os::unix::fs::symlink("../../../../etc/passwd", root.join("bin/escape"))
            .expect("escape link");
        let cases = [
            ("/bin/sh", Some("bin/busybox")),
            ("/usr/bin/env", Some("bin/busybox")),
            ("/bin/../bin/sh", Some("bin/busybox")),
            ("/bin/escape", None),
            ("/missing", None),
        ];
        for (path, want) in cases {
            let got = resolve_in_root(root, Path::new(path))
                .filter(|p| p.exists())
                .map(|p| p.strip_prefix(root).expect("inside").to_path_buf());
            assert_eq!(got, want.map(PathBuf::from), "{path}");
        }

        let host = linux("amd64");
        let none = dir.path().join("no-binfmt");
        let sh = vec!["/bin/sh".to_string(), "-c".to_string(), "true".to_string()];
        let err = check_runnable(root, &sh, &[], &host, &none).expect_err("foreign");
        assert_eq!(err.program, "/bin/sh");
        assert_eq!(err.binary.to_string(), "linux/arm64");
        let msg = err.to_string();
        assert!(
            msg.starts_with("this linux/amd64 host cannot run linux/arm64 binaries"),
            "{msg}"
        );
        assert!(msg.contains("binfmt_misc") && msg.ends_with("or build for linux/amd64"));
        // Looked up in PATH, as runc does.
        let by_name = vec!["sh".to_string()];
        let path = [("PATH".to_string(), "/usr/bin:/bin".to_string())];
        assert!(check_runnable(root, &by_name, &path, &host, &none).is_err());
        // The host's own architecture, a missing program and a registered emulator pass.
        assert!(check_runnable(root, &sh, &[], &linux("arm64"), &none).is_ok());
        let missing = vec!["/nope".to_string()];
        assert!(check_runnable(root, &missing, &[], &host, &none).is_ok());
        let binfmt = dir.path().join("binfmt");
        fs::create_dir_all(&binfmt).expect("binfmt dir");
        fs::write(binfmt.join("status"), "enabled\n").expect("status");
        fs::write(binfmt.join("register"), "").expect("register");
        fs::write(
            binfmt.join("qemu-aarch64"),
            "enabled\ninterpreter /q\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
             mask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .expect("handler");
        assert!(check_runnable(root, &sh, &[], &host, &binfmt).is_ok());

        let enoexec = std::io::Error::from_raw_os_error(libc::ENOEXEC).to_string();
        let reason = format!("execve /bin/sh: {enoexec}");
        let explained = explain_exec_failure(root, &sh, &[], &host, &reason).expect("explained");
        assert!(
            explained.starts_with("this linux/amd64 host"),
            "{explained}"
        );
        assert!(explain_exec_failure(root, &sh, &[], &host, "mount: EPERM").is_none());
    }
}
