//! Command-line arguments (clap derive). One subcommand per file under `commands/`; this file
//! only declares the shapes. Flag values with a syntax of their own are parsed by [`crate::spec`]
//! through clap value parsers, so a bad value is a usage error (exit code 2) naming the flag.
//!
//! `rbuild [OPTIONS] CONTEXT` is `rbuild build [OPTIONS] CONTEXT`, as `docker build` users
//! expect: the top level carries the build flags and treats a first word that is not a
//! subcommand as the context.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rbuild_dockerfile::lower::Platform;
use rbuild_layers::oci_layout::ImageName;

use crate::spec::{ContextSpec, KeyValue, OutputSpec, SecretSpec, SshSpec};

const TOP_EXAMPLES: &str = "\
Examples:
  rbuild -t app:v1 .                      build ./Dockerfile into the local store as app:v1
  rbuild build -f ci/Dockerfile -t app .  the same, spelled out, with another Dockerfile
  rbuild images                           list the images in the local store";

/// rbuild: a daemonless OCI image builder that reads Dockerfiles like BuildKit.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version,
    about = "rbuild: a daemonless OCI image builder that reads Dockerfiles like BuildKit",
    override_usage = "rbuild [OPTIONS] CONTEXT\n       rbuild <COMMAND> [ARGS]",
    subcommand_negates_reqs = true,
    after_help = TOP_EXAMPLES
)]
pub struct Cli {
    /// The local store (default: $RBUILD_ROOT, else $XDG_DATA_HOME/rbuild, else
    /// ~/.local/share/rbuild).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// What to do; without a subcommand, `build`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The build flags of `rbuild [OPTIONS] CONTEXT`.
    #[command(flatten)]
    pub build: Option<BuildArgs>,
}

/// The subcommands.
// Parsed once per process: `Build`'s many flags make it large, and boxing it buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile (what `rbuild [OPTIONS] CONTEXT` does too).
    #[command(after_help = BUILD_EXAMPLES)]
    Build(BuildArgs),
    /// List the images in the local store.
    #[command(after_help = "Example:\n  rbuild images --format json")]
    Images(ImagesArgs),
    /// Print an image's manifest and config as JSON.
    #[command(after_help = "Example:\n  rbuild inspect app:v1")]
    Inspect(NameArgs),
    /// Show an image's history: one row per build step, with the size of its layer.
    #[command(after_help = "Example:\n  rbuild history app:v1")]
    History(NameArgs),
    /// Give an image in the local store another name.
    #[command(after_help = "Example:\n  rbuild tag app:v1 registry.example.com/team/app:1.0")]
    Tag(TagArgs),
    /// Remove names from the local store (the data goes on the next `rbuild prune`).
    #[command(after_help = "Example:\n  rbuild rmi app:v1 app:v2")]
    Rmi(RmiArgs),
    /// Write an image from the local store to an OCI layout, docker archive, directory or tar.
    #[command(after_help = "Example:\n  rbuild export app:v1 -o type=docker,dest=app.tar")]
    Export(ExportArgs),
    /// Free disk space: unreferenced blobs and stale cache entries (with --all, the whole
    /// build cache).
    #[command(after_help = "Example:\n  rbuild prune --all")]
    Prune(PruneArgs),
    /// Show the stages a build would run, in build order, and the ones it skips.
    #[command(
        after_help = "Example:\n  rbuild plan --target test -f fixtures/multistage/Dockerfile ."
    )]
    Plan(PlanArgs),
    /// Push an image from the local store to a registry.
    #[command(
        after_help = "Examples:\n  rbuild push registry.example.com/team/app:1.0\n  rbuild push app:v1 127.0.0.1:5000/app:v1"
    )]
    Push(PushArgs),
    /// Log in to a registry (the credentials are checked, then saved in the Docker config).
    #[command(
        after_help = "Example:\n  echo \"$TOKEN\" | rbuild login registry.example.com -u me --password-stdin"
    )]
    Login(LoginArgs),
    /// Remove the saved credentials of a registry.
    #[command(after_help = "Example:\n  rbuild logout registry.example.com")]
    Logout(LogoutArgs),
    /// Tools for looking inside rbuild.
    #[command(subcommand, after_help = "Example:\n  rbuild debug parse Dockerfile")]
    Debug(DebugCommand),
}

const BUILD_EXAMPLES: &str = "\
Examples:
  rbuild build -t app:v1 .
  rbuild build -t app:v1 -o type=oci,dest=out/app .
  rbuild build --build-arg VERSION=1.2 --secret id=token,env=TOKEN --target release .
  rbuild build --build-context base=oci-layout://./layouts/base:v1 -o type=docker,dest=app.tar .
  rbuild build --pull --push -t registry.example.com/team/app:1.0 .
  rbuild build --cache-from reg.example.com/app:cache --cache-to type=registry,ref=reg.example.com/app:cache,mode=max .
  rbuild build - < Dockerfile";

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// `tty` on a terminal, else `plain`.
    Auto,
    /// One line per event, BuildKit's `--progress=plain`.
    Plain,
    /// A live view of the running steps.
    Tty,
    /// Nothing but errors and the final digest.
    Quiet,
    /// One JSON object per event, for tools.
    Rawjson,
}

/// `--network` for RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// The builder's default.
    Default,
    /// No network.
    None,
    /// The host's network.
    Host,
}

/// `rbuild build` (and `rbuild [OPTIONS] CONTEXT`).
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Name the image NAME[:TAG] in the local store (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]", value_parser = parse_tag)]
    pub tags: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// A build argument; `KEY` alone takes the value from the environment, if set.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// A label added to the image config.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<KeyValue>,
    /// An extra named context: NAME=oci-layout://DIR[:TAG|@DIGEST], NAME=docker-image://REF or
    /// NAME=DIR.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<ContextSpec>,
    /// Run every step, ignoring the build cache.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// The network of RUN steps.
    #[arg(long, value_enum, default_value_t = NetworkArg::Default)]
    pub network: NetworkArg,
    /// A secret for RUN --mount=type=secret: id=ID[,src=FILE|env=VAR].
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|env=VAR]")]
    pub secrets: Vec<SecretSpec>,
    /// Forward an SSH agent to RUN --mount=type=ssh: `default` ($SSH_AUTH_SOCK) or
    /// default=SOCKET.
    #[arg(long = "ssh", value_name = "default[=SOCKET]")]
    pub ssh: Option<SshSpec>,
    /// The platform to build for, e.g. linux/arm64 or linux/arm/v7 (default: the host's); RUN
    /// steps for a foreign platform need an emulator registered with binfmt_misc.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// The RUN executor: builtin (rbuild's sandbox), runc, or the path of an OCI runtime.
    #[arg(long, value_name = "builtin|runc|PATH", default_value = "builtin")]
    pub runtime: String,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Re-resolve base image tags in their registry even when the local store has them.
    #[arg(long)]
    pub pull: bool,
    /// Push the image to its registry under each -t name after the build.
    #[arg(long)]
    pub push: bool,
    /// A registry reached over plain HTTP (localhost and 127.0.0.1 always are; repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Export the build cache: type=registry,ref=REF[,mode=min|max][,ignore-error=true] |
    /// type=local,dest=DIR[,tag=TAG][,mode=min|max] | REF (repeatable).
    #[arg(long = "cache-to", value_name = "type=TYPE,…")]
    pub cache_to: Vec<String>,
    /// Match steps against an exported cache: type=registry,ref=REF |
    /// type=local,src=DIR[,tag=TAG] | REF (repeatable).
    #[arg(long = "cache-from", value_name = "type=TYPE,…")]
    pub cache_from: Vec<String>,
    /// Also write the image here: type=oci,dest=DIR[,tar=true] | type=docker,dest=FILE |
    /// type=local,dest=DIR | type=tar,dest=FILE | type=registry[,name=REF] (repeatable).
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    pub outputs: Vec<OutputSpec>,
    /// The build context directory, or `-` for a Dockerfile on stdin and no context.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// `rbuild images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Commands taking one image name.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The image: NAME[:TAG], or a (prefix of a) digest.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `rbuild tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image to name.
    #[arg(value_name = "SRC")]
    pub src: String,
    /// The new name.
    #[arg(value_name = "DST", value_parser = parse_tag)]
    pub dst: String,
}

/// `rbuild rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// The names (or digests) to remove.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

/// `rbuild export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The image to write.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where: type=oci,dest=DIR[,tar=true] | type=docker,dest=FILE | type=local,dest=DIR |
    /// type=tar,dest=FILE (repeatable).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "type=TYPE,dest=PATH",
        required = true
    )]
    pub outputs: Vec<OutputSpec>,
}

/// `rbuild push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image in the local store (NAME[:TAG] or a digest).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to push it (default: NAME, which then must name a registry repository).
    #[arg(value_name = "DEST")]
    pub dest: Option<String>,
    /// A registry reached over plain HTTP (localhost and 127.0.0.1 always are; repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Print only the pushed digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `rbuild login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry host (default: Docker Hub).
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
    /// The user name.
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: String,
    /// Read the password from stdin (the only way: a password flag would leak into `ps`).
    #[arg(long = "password-stdin", required = true)]
    pub password_stdin: bool,
    /// A registry reached over plain HTTP (localhost and 127.0.0.1 always are; repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

/// `rbuild logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry host (default: Docker Hub).
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
}

/// `rbuild prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also drop the whole build cache, keeping only what named images need.
    #[arg(short = 'a', long)]
    pub all: bool,
}

/// `rbuild plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// A build argument; `KEY` alone takes the value from the environment, if set.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// The platform to build for, e.g. linux/arm64 (default: the host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The build context directory.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// How listings print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Text,
    /// One JSON document for tools.
    Json,
}

/// `rbuild debug …`.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print the parsed Dockerfile as BuildKit's AST dump.
    #[command(after_help = "Example:\n  rbuild debug parse fixtures/hello/Dockerfile")]
    Parse {
        /// The Dockerfile.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn parse_platform(text: &str) -> Result<Platform, String> {
    text.parse()
        .map_err(|e: rbuild_dockerfile::lower::PlatformError| e.to_string())
}

/// Check an image name as Docker normalizes it; the text is kept as given.
fn parse_tag(text: &str) -> Result<String, String> {
    text.parse::<ImageName>()
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rbuild").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_context_is_a_build() {
        let cli = parse(&["-t", "app:v1", "--root", "/r", "."]).expect("parses");
        assert!(cli.command.is_none());
        let build = cli.build.expect("build args");
        assert_eq!(build.tags, vec!["app:v1".to_string()]);
        assert_eq!(build.context, PathBuf::from("."));
        assert_eq!(cli.root, Some(PathBuf::from("/r")));
    }

    #[test]
    fn subcommands_take_global_root() {
        for args in [&["images", "--root", "/r"][..], &["--root", "/r", "images"]] {
            let cli = parse(args).expect("parses");
            assert!(matches!(cli.command, Some(Command::Images(_))), "{args:?}");
            assert_eq!(cli.root, Some(PathBuf::from("/r")), "{args:?}");
        }
        let cli = parse(&[
            "build",
            "-t",
            "a",
            "-t",
            "b:2",
            "-o",
            "type=oci,dest=x",
            "ctx",
        ])
        .expect("parses");
        let Some(Command::Build(b)) = cli.command else {
            panic!("a build");
        };
        assert_eq!(b.tags.len(), 2);
        assert_eq!(b.outputs.len(), 1);
    }

    #[test]
    fn registry_flags() {
        let cli = parse(&[
            "build",
            "--pull",
            "--push",
            "--insecure-registry",
            "a:5000",
            "--insecure-registry",
            "b",
            "-t",
            "a:5000/x:1",
            ".",
        ])
        .expect("parses");
        let Some(Command::Build(b)) = cli.command else {
            panic!("a build");
        };
        assert!(b.pull && b.push);
        assert_eq!(b.insecure_registries, vec!["a:5000", "b"]);
        let cli = parse(&["push", "-q", "app:v1", "reg:5000/app:v1"]).expect("parses");
        let Some(Command::Push(p)) = cli.command else {
            panic!("a push");
        };
        assert_eq!(
            (p.name.as_str(), p.dest.as_deref()),
            ("app:v1", Some("reg:5000/app:v1"))
        );
        assert!(p.quiet);
        let cli = parse(&["login", "-u", "me", "--password-stdin"]).expect("parses");
        let Some(Command::Login(l)) = cli.command else {
            panic!("a login");
        };
        assert_eq!((l.host, l.username.as_str()), (None, "me"));
        let cli = parse(&["logout", "reg:5000"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Logout(LogoutArgs { host: Some(_) }))
        ));
    }

    #[test]
    fn usage_errors() {
        let cases: &[&[&str]] = &[
            &[],
            &["-t", "Bad:Name", "."],
            &["--progress", "fancy", "."],
            &["--network", "bridge", "."],
            &["-o", "type=nope,dest=x", "."],
            &["--secret", "src=/x", "."],
            &["--platform", "linux/", "."],
            &["rmi"],
            &["export", "app"],
            &["-t", "a", "images"],
            &["push"],
            &["login", "reg:5000", "-u", "me"],
            &["login", "reg:5000", "--password-stdin"],
        ];
        for args in cases {
            let e = parse(args).expect_err(&format!("{args:?} is a usage error"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }
}
