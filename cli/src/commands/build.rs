//! `rbuild build [OPTIONS] CONTEXT` (also `rbuild [OPTIONS] CONTEXT`): turn the flags into an
//! [`rbuild::solve::BuildRequest`] (reading here everything that comes from the environment or
//! from files: secrets, `SOURCE_DATE_EPOCH`, bare `--build-arg KEY`s, the SSH agent socket),
//! run the build into the local store with progress on stderr, write each `-o` output, and say
//! what was produced: the image digest, its tags, where it was written and pushed (`--push`,
//! `-o type=registry`; credentials come from the Docker config, as `docker build` reads them).
//!
//! As with `docker build`, `-f` is relative to the working directory and defaults to
//! `CONTEXT/Dockerfile`; CONTEXT `-` (or `-f -`) reads the Dockerfile from stdin, and `-` as
//! CONTEXT means there is no build context at all.
//!
//! Ctrl-C or SIGTERM cancels the build ([`crate::interrupt`]): it exits 130 with "build
//! cancelled". A missing COPY source hidden by `.dockerignore` is explained by the library's own
//! error, which names the rule; the CLI adds nothing of its own.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rbuild::graph::NetworkMode;
use rbuild::solve::sources::RegistrySettings;
use rbuild::solve::{BuildOutcome, BuildRequest, DockerfileSource, NamedContext, Output, Runtime};
use rbuild::store::Store;
use rbuild_dockerfile::lower::Platform;
use rbuild_dockerfile::LowerOptions;
use rbuild_layers::compress::Compression;
use rbuild_layers::oci_layout::ImageName;
use serde_json::json;

use crate::args::{BuildArgs, NetworkArg};
use crate::env;
use crate::interrupt;
use crate::progress::{Progress, StepLabels, Style};
use crate::report::CliError;
use crate::spec::{OutputSpec, SecretSource, SecretSpec};

/// The Dockerfile as the CLI knows it: its source for the library, and its name and text for
/// error snippets and step labels.
struct Dockerfile {
    source: DockerfileSource,
    name: String,
    text: String,
}

/// Run `rbuild build`.
pub fn run(root: Option<&Path>, args: &BuildArgs) -> Result<(), CliError> {
    let root = env::store_root(root).map_err(CliError::Usage)?;
    let platform = check_platform(args.platform.as_ref())?;
    let runtime = runtime(&args.runtime)?;
    let epoch = env::source_date_epoch().map_err(CliError::Usage)?;
    let compression = compression(&args.outputs)?;
    let (context, dockerfile) = context_and_dockerfile(args)?;
    let build_args = env::build_args(&args.build_args);
    let labels: BTreeMap<String, String> = args
        .labels
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let named_contexts: BTreeMap<String, NamedContext> = args
        .build_contexts
        .iter()
        .map(|c| (c.name.clone(), c.context.clone()))
        .collect();
    let secrets = read_secrets(&args.secrets)?;
    let ssh_agent = match &args.ssh {
        None => None,
        Some(spec) => match spec.socket.clone().or_else(env::ssh_auth_sock) {
            Some(sock) => Some(sock),
            None => return Err(CliError::Usage(
                "--ssh default needs an agent: $SSH_AUTH_SOCK is not set (or give default=SOCKET)"
                    .into(),
            )),
        },
    };
    let step_labels = step_labels(&dockerfile.text, args, &build_args);

    let mut req = BuildRequest::new(context, dockerfile.source.clone());
    req.target = args.target.clone();
    req.build_args = build_args;
    req.labels = labels;
    req.named_contexts = named_contexts;
    req.no_cache = args.no_cache;
    req.network = match args.network {
        NetworkArg::Default => NetworkMode::Default,
        NetworkArg::None => NetworkMode::None,
        NetworkArg::Host => NetworkMode::Host,
    };
    req.secrets = secrets;
    req.ssh_agent = ssh_agent;
    req.platform = platform;
    req.runtime = runtime;
    req.epoch = epoch;
    req.compression = compression;
    req.tags = args.tags.clone();
    req.pull = args.pull;
    req.push = args.push;
    req.insecure_registries = args.insecure_registries.clone();
    req.registry_credentials = env::docker_config();
    req.cache_from = cache_specs("--cache-from", &args.cache_from)?;
    req.cache_to = cache_specs("--cache-to", &args.cache_to)?;
    if args.push && args.tags.is_empty() {
        return Err(CliError::Usage(
            "--push needs a name: give -t REGISTRY/NAME:TAG".into(),
        ));
    }

    let store = Store::open(&root)?;
    let style = Style::choose(args.progress, std::io::stderr().is_terminal());
    let progress = Progress::stderr(style, step_labels);
    let started = Instant::now();
    let snippet = Some((dockerfile.name.clone(), dockerfile.text.clone()));
    let cancel = interrupt::install()?;
    let result = rbuild::solve::build_with_cancel(&store, &req, &progress, Some(cancel.as_ref()));
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            progress.finish();
            // A step that failed because it was killed on Ctrl-C is a cancellation too.
            if cancel.is_cancelled() {
                return Err(CliError::Cancelled);
            }
            return Err(CliError::Build {
                dockerfile: snippet,
                tails: progress.failed_tails(),
                error: Box::new(error),
            });
        }
    };
    let mut written = Vec::new();
    for spec in &args.outputs {
        let names = output_names(&outcome.tags, &spec.names);
        let registry = RegistrySettings::from_request(&req);
        if let Err(error) = rbuild::solve::export_with(
            &store,
            &outcome.image,
            &names,
            &spec.output,
            &registry,
            &progress,
        ) {
            progress.finish();
            return Err(CliError::Build {
                dockerfile: None,
                tails: Vec::new(),
                error: Box::new(error),
            });
        }
        written.push(describe_output(&spec.output));
    }
    progress.finish();
    summarize(&progress, &outcome, store.root(), &written, started);
    if style == Style::Quiet {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", outcome.manifest_digest)
            .map_err(|e| CliError::Output(e.to_string()))?;
    }
    Ok(())
}

/// Parse `--cache-from`/`--cache-to` values with the library's parser. As with buildx, whose
/// unknown cache types are refused by BuildKit when the build starts, a bad value fails the
/// build (exit code 1) with the flag and the value named.
fn cache_specs<T>(flag: &'static str, values: &[String]) -> Result<Vec<T>, CliError>
where
    T: std::str::FromStr<Err = rbuild::cache::remote::CacheSpecError>,
{
    values
        .iter()
        .map(|v| {
            v.parse().map_err(|e| CliError::Build {
                dockerfile: None,
                tails: Vec::new(),
                error: Box::new(rbuild::BuildError::Request {
                    field: flag,
                    reason: format!("`{v}`: {e}"),
                }),
            })
        })
        .collect()
}

/// The final report: digest, tags, where the image went.
fn summarize(
    progress: &Progress,
    outcome: &BuildOutcome,
    store_root: &Path,
    written: &[String],
    started: Instant,
) {
    let elapsed = started.elapsed().as_secs_f64();
    progress.line(&format!(
        "built image {} in {elapsed:.1}s: {} steps, {} cached",
        outcome.manifest_digest, outcome.steps, outcome.cached
    ));
    progress.line(&format!("config {}", outcome.config_digest));
    if outcome.tags.is_empty() {
        progress.line(&format!(
            "stored without a name in {} (give -t NAME to keep it past `rbuild prune`)",
            store_root.display()
        ));
    } else {
        let names: Vec<String> = outcome.tags.iter().map(ImageName::familiar).collect();
        progress.line(&format!(
            "named {} in the store at {}",
            names.join(", "),
            store_root.display()
        ));
    }
    for p in &outcome.pushed {
        progress.line(&format!("pushed {} ({})", p.reference, p.digest));
    }
    for w in written {
        progress.line(&format!("wrote {w}"));
    }
    for c in &outcome.cache_exports {
        progress.line(&format!(
            "exported cache to {}: {}, {} records",
            c.location, c.manifest_digest, c.records
        ));
    }
    for w in &outcome.cache_warnings {
        progress.line(&format!("warning: {w}"));
    }
    progress.json(json!({
        "type": "result",
        "digest": outcome.manifest_digest.to_string(),
        "config": outcome.config_digest.to_string(),
        "tags": outcome.tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "store": store_root.display().to_string(),
        "outputs": written,
        "pushed": outcome.pushed.iter().map(|p| p.reference.to_string()).collect::<Vec<_>>(),
        "cache_exports": outcome.cache_exports.iter().map(|c| json!({
            "location": c.location,
            "digest": c.manifest_digest.to_string(),
            "records": c.records,
        })).collect::<Vec<_>>(),
        "cache_warnings": outcome.cache_warnings,
        "steps": outcome.steps,
        "cached": outcome.cached,
    }));
}

/// Names an output carries: the build's tags, then the output's own `name=`s, without repeats.
pub fn output_names(tags: &[ImageName], extra: &[ImageName]) -> Vec<ImageName> {
    let mut names: Vec<ImageName> = Vec::new();
    for n in tags.iter().chain(extra) {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

/// How an output is described in the summary.
pub fn describe_output(output: &Output) -> String {
    match output {
        Output::Oci { dest, tar: false } => format!("oci layout to {}", dest.display()),
        Output::Oci { dest, tar: true } => format!("oci layout tar to {}", dest.display()),
        Output::Docker { dest } => format!("docker archive to {}", dest.display()),
        Output::Local { dest } => format!("root filesystem to {}", dest.display()),
        Output::Tar { dest } => format!("root filesystem tar to {}", dest.display()),
        Output::Registry { names } if names.is_empty() => "registry (the image's names)".into(),
        Output::Registry { names } => format!("registry as {}", names.join(", ")),
    }
}

/// `--platform`: any Linux platform (passed on; the library normalizes it and resolves bases for
/// it). Other operating systems are usage errors: rbuild builds Linux images only.
fn check_platform(platform: Option<&Platform>) -> Result<Option<String>, CliError> {
    let Some(p) = platform else {
        return Ok(None);
    };
    if p.os != "linux" {
        return Err(CliError::Usage(format!(
            "--platform {p}: rbuild builds Linux images only (e.g. linux/amd64, linux/arm64)"
        )));
    }
    Ok(Some(p.to_string()))
}

/// `--runtime builtin|runc|PATH`.
fn runtime(value: &str) -> Result<Runtime, CliError> {
    if value == "builtin" {
        return Ok(Runtime::Builtin);
    }
    match env::find_program(value) {
        Some(path) => Ok(Runtime::Oci(path)),
        None if value.contains('/') => Err(CliError::Usage(format!(
            "--runtime {value}: no such executable file"
        ))),
        None => Err(CliError::Usage(format!(
            "--runtime {value}: not found in $PATH (use builtin, runc or the runtime's path)"
        ))),
    }
}

/// The layer compression the outputs ask for (gzip by default); outputs must agree, since
/// the layers are written once.
fn compression(outputs: &[OutputSpec]) -> Result<Compression, CliError> {
    let mut chosen: Option<Compression> = None;
    for c in outputs.iter().filter_map(|o| o.compression) {
        match chosen {
            Some(prev) if prev != c => {
                return Err(CliError::Usage(format!(
                    "outputs ask for different compressions ({prev:?} and {c:?}); layers are written once, use one"
                )))
            }
            _ => chosen = Some(c),
        }
    }
    Ok(chosen.unwrap_or_default())
}

fn read_stdin() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| CliError::Io {
            op: "read the dockerfile from",
            path: PathBuf::from("stdin"),
            source,
        })?;
    Ok(text)
}

fn context_and_dockerfile(args: &BuildArgs) -> Result<(Option<PathBuf>, Dockerfile), CliError> {
    let dash = Path::new("-");
    let stdin_dockerfile = |text: String| Dockerfile {
        source: DockerfileSource::Text {
            name: "Dockerfile".into(),
            text: text.clone(),
        },
        name: "Dockerfile".into(),
        text,
    };
    if args.context == dash {
        if args.file.as_deref().is_some_and(|f| f != dash) {
            return Err(CliError::Usage(
                "with CONTEXT '-' the Dockerfile is read from stdin; -f cannot name another one"
                    .into(),
            ));
        }
        return Ok((None, stdin_dockerfile(read_stdin()?)));
    }
    if !args.context.is_dir() {
        return Err(CliError::Usage(format!(
            "build context {} is not a directory (give a directory, or - for a Dockerfile on stdin)",
            args.context.display()
        )));
    }
    let context = Some(args.context.clone());
    if args.file.as_deref() == Some(dash) {
        return Ok((context, stdin_dockerfile(read_stdin()?)));
    }
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&path).map_err(|source| CliError::Io {
        op: "read",
        path: path.clone(),
        source,
    })?;
    Ok((
        context,
        Dockerfile {
            source: DockerfileSource::Path(path.clone()),
            name: path.display().to_string(),
            text,
        },
    ))
}

/// Step labels from the Dockerfile's plan; when it does not lower, plain names (the build
/// reports the error).
fn step_labels(text: &str, args: &BuildArgs, build_args: &BTreeMap<String, String>) -> StepLabels {
    let Ok(df) = rbuild_dockerfile::parse(text) else {
        return StepLabels::default();
    };
    let opts = LowerOptions {
        target: args.target.clone(),
        build_args: build_args.clone(),
        platform: args.platform.clone(),
        build_platform: None,
    };
    match rbuild_dockerfile::lower(&df, &opts) {
        Ok(plan) => StepLabels::from_plan(&plan),
        Err(_) => StepLabels::default(),
    }
}

/// Read every `--secret` (bytes only; never printed).
fn read_secrets(specs: &[SecretSpec]) -> Result<BTreeMap<String, Vec<u8>>, CliError> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let from_env = |var: &str| {
            env::var(var).map(String::into_bytes).ok_or_else(|| {
                CliError::Usage(format!(
                    "secret {}: environment variable {var} is not set",
                    spec.id
                ))
            })
        };
        let from_file = |path: &Path| {
            std::fs::read(path).map_err(|source| CliError::Io {
                op: "read secret file",
                path: path.to_path_buf(),
                source,
            })
        };
        let bytes = match &spec.source {
            SecretSource::File(path) => from_file(path)?,
            SecretSource::Env(var) => from_env(var)?,
            SecretSource::ById if env::is_set(&spec.id) => from_env(&spec.id)?,
            SecretSource::ById => from_file(Path::new(&spec.id))?,
        };
        out.insert(spec.id.clone(), bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> OutputSpec {
        text.parse().expect("valid output")
    }

    #[test]
    fn compression_comes_from_outputs_and_must_agree() {
        assert_eq!(compression(&[]).expect("default"), Compression::Gzip);
        let one = [
            spec("type=oci,dest=a,compression=zstd"),
            spec("type=docker,dest=b"),
        ];
        assert_eq!(compression(&one).expect("agrees"), Compression::Zstd);
        let two = [
            spec("type=oci,dest=a,compression=zstd"),
            spec("type=oci,dest=b,compression=gzip"),
        ];
        assert_eq!(compression(&two).expect_err("conflict").exit_code(), 2);
    }

    #[test]
    fn platform_must_be_linux() {
        assert_eq!(check_platform(None).expect("none"), None);
        let host = Platform::host();
        assert_eq!(
            check_platform(Some(&host)).expect("host"),
            Some(host.to_string())
        );
        let arm: Platform = "linux/arm64".parse().expect("valid");
        assert_eq!(
            check_platform(Some(&arm)).expect("any linux platform"),
            Some("linux/arm64".into())
        );
        let windows: Platform = "windows/amd64".parse().expect("valid");
        let err = check_platform(Some(&windows)).expect_err("not linux");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("Linux images only"), "{err}");
    }

    #[test]
    fn runtimes() {
        assert_eq!(runtime("builtin").expect("builtin"), Runtime::Builtin);
        assert_eq!(
            runtime("/no/such/runtime")
                .expect_err("missing")
                .exit_code(),
            2
        );
        assert_eq!(
            runtime("no-such-runtime-xyz")
                .expect_err("missing")
                .exit_code(),
            2
        );
        assert_eq!(
            runtime("/bin/sh").expect("exists"),
            Runtime::Oci(PathBuf::from("/bin/sh"))
        );
    }

    #[test]
    fn output_names_keep_order_without_repeats() {
        let n = |s: &str| s.parse::<ImageName>().expect("valid");
        let got = output_names(&[n("a:1"), n("b")], &[n("b:latest"), n("c")]);
        assert_eq!(got, vec![n("a:1"), n("b"), n("c")]);
    }

    #[test]
    fn secrets_are_read_from_files_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tok");
        std::fs::write(&file, b"s3cret").expect("write");
        let specs: Vec<SecretSpec> = [format!("id=a,src={}", file.display())]
            .iter()
            .map(|s| s.parse().expect("valid"))
            .collect();
        let got = read_secrets(&specs).expect("reads");
        assert_eq!(got.get("a").map(Vec::as_slice), Some(&b"s3cret"[..]));
        let missing: SecretSpec = "id=b,env=RBUILD_TEST_SURELY_UNSET_VAR"
            .parse()
            .expect("valid");
        assert_eq!(read_secrets(&[missing]).expect_err("unset").exit_code(), 2);
        let nofile: SecretSpec = "id=c,src=/no/such/secret".parse().expect("valid");
        assert_eq!(read_secrets(&[nofile]).expect_err("no file").exit_code(), 1);
    }
}
