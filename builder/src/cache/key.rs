//! Cache keys: a sha256 over an explicit, versioned, length-prefixed sequence of labelled fields.
//!
//! Keys are written by hand, field by field, through [`KeyBuilder`] and the [`KeyFields`] trait
//! (as `uv-cache-key` does); nothing is hashed from `Debug` output, `HashMap` order, host paths,
//! mtimes, user names or the wall clock. The builder yields a [`KeyManifest`], and the key is the
//! hash of that manifest ([`KeyManifest::key`]), so the stored manifest always explains its key.
//!
//! # Inputs of a step's key ([`step_key`])
//!
//! In hashing order:
//! 1. the key scheme version ([`super::manifest::KEY_VERSION`]);
//! 2. `parent`: the parent's *state* key (absent for sources and for `COPY --link`, whose layer
//!    does not depend on what is below it);
//! 3. `op`: the op kind, then the op's expanded fields:
//!    - source: scratch / image reference + platform + resolved manifest digest / named context
//!      name + content digest of the whole context;
//!    - COPY/ADD: kind and ADD options, the input filesystem (context selection digest, the
//!      source step's state key, or the image's resolved digest), each source (path, heredoc name
//!      and body, URL or git URL/ref/subdir plus the digest of the content it resolved to), dest,
//!      workdir, chown, chmod, link, excludes, parents, checksum;
//!    - RUN: command (argv, or shell + script), environment in order, user, workdir, network,
//!      security, and per mount its type, target and options plus the digest of what it reads
//!      (secret and SSH *values* and the proxy build args never enter a key, as in BuildKit);
//!    - config changes: the keyword and the change's value;
//! 4. `var.NAME`: each build variable the step's expansion used, sorted by name, with its value.
//!
//! Context file digests (computed by [`crate::context`]) cover, per selected path in byte
//! order: the path, the file type, the permission bits, and the content digest or link target;
//! never mtime, inode or the host owner (COPY writes 0:0 unless `--chown` says otherwise, and
//! `--chown` is a field of its own).
//!
//! Digests from outside the step come through the [`InputDigests`] trait; [`KeyInputs`] is a
//! map-backed implementation. A missing input is an error naming it, never a silently weaker key.
//!
//! # State keys
//!
//! Besides the key its cache record is stored under, every step has a *state key* naming the
//! filesystem it leaves behind, which its children use as `parent`. They are equal except for
//! `COPY --link` (state = hash(parent state, key)) and for config changes other than WORKDIR,
//! which do not touch the filesystem and pass their parent's state through, so that, as in
//! BuildKit, editing a LABEL does not invalidate the RUN after it (ENV and USER still do, through
//! the RUN's own `env` and `user` fields).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rbuild_layers::digest::{Digest, DigestParseError};
use serde::{Deserialize, Serialize};

use super::manifest::{FieldValue, KeyField, KeyManifest};
use crate::context::{ContextError, HashedContext};
use crate::graph::{
    Command, ConfigOp, ContextName, CopyKind, CopyOp, CopySource, FsInput, ImageRef, MountKind,
    MountPerms, Op, RunOp, SourceOp, Step, StepId,
};

/// A cache key: the sha256 of a [`KeyManifest`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheKey(Digest);

impl CacheKey {
    /// Wrap a digest that is a key.
    pub fn from_digest(d: Digest) -> Self {
        CacheKey(d)
    }

    /// The key as a digest.
    pub fn as_digest(&self) -> &Digest {
        &self.0
    }

    /// The 64 hex digits (used as the record's file name).
    pub fn hex(&self) -> &str {
        self.0.hex()
    }
}

impl FromStr for CacheKey {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(CacheKey)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0)
    }
}

/// Collects labelled fields in order; labels are prefixed by the current scope.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    fields: Vec<KeyField>,
    prefix: String,
    problem: Option<Problem>,
}

/// The first input a key builder could not resolve.
#[derive(Debug)]
enum Problem {
    Unresolved(String),
    Context(ContextError),
}

impl KeyBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, label: &str, value: FieldValue) -> &mut Self {
        let label = if self.prefix.is_empty() {
            label.to_string()
        } else {
            format!("{}.{label}", self.prefix)
        };
        self.fields.push(KeyField { label, value });
        self
    }

    /// A text field.
    pub fn text(&mut self, label: &str, value: &str) -> &mut Self {
        self.push(label, FieldValue::text(value))
    }

    /// An optional text field (`None` is recorded as absent, distinct from empty).
    pub fn opt_text(&mut self, label: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(label, v),
            None => self.push(label, FieldValue::Absent),
        }
    }

    /// A digest field.
    pub fn digest(&mut self, label: &str, value: &Digest) -> &mut Self {
        self.push(label, FieldValue::Digest(value.clone()))
    }

    /// An optional digest field.
    pub fn opt_digest(&mut self, label: &str, value: Option<&Digest>) -> &mut Self {
        match value {
            Some(v) => self.digest(label, v),
            None => self.push(label, FieldValue::Absent),
        }
    }

    /// A boolean field (`true`/`false`).
    pub fn flag(&mut self, label: &str, value: bool) -> &mut Self {
        self.text(label, if value { "true" } else { "false" })
    }

    /// An unsigned number field (decimal).
    pub fn number(&mut self, label: &str, value: u64) -> &mut Self {
        self.text(label, &value.to_string())
    }

    /// A list of strings, encoded as a JSON array (unambiguous, readable in `rbuild why`).
    pub fn list(&mut self, label: &str, values: &[String]) -> &mut Self {
        self.text(label, &json(values))
    }

    /// Ordered `name=value` pairs, encoded as a JSON array of pairs.
    pub fn pairs(&mut self, label: &str, values: &[(String, String)]) -> &mut Self {
        self.text(label, &json(values))
    }

    /// Run `f` with `scope` appended to the label prefix.
    pub fn scoped(&mut self, scope: &str, f: impl FnOnce(&mut Self)) -> &mut Self {
        let saved = self.prefix.clone();
        self.prefix = if saved.is_empty() {
            scope.to_string()
        } else {
            format!("{saved}.{scope}")
        };
        f(self);
        self.prefix = saved;
        self
    }

    /// Add a value's own fields under `scope`.
    pub fn nested(&mut self, scope: &str, value: &impl KeyFields) -> &mut Self {
        self.scoped(scope, |k| value.key_fields(k))
    }

    /// Record that an input could not be resolved; the first such note is kept and reported
    /// by the key computation after the fields are written.
    pub fn unresolved(&mut self, what: String) {
        self.problem.get_or_insert(Problem::Unresolved(what));
    }

    fn context_failed(&mut self, e: ContextError) {
        self.problem.get_or_insert(Problem::Context(e));
    }

    /// The manifest of everything added, at the current key version.
    pub fn finish(self) -> KeyManifest {
        KeyManifest {
            fields: self.fields,
            ..KeyManifest::new()
        }
    }
}

fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("strings and string pairs always serialize to JSON")
}

/// A value that contributes labelled fields to a cache key, in a fixed, documented order.
pub trait KeyFields {
    /// Add this value's fields to `k`.
    fn key_fields(&self, k: &mut KeyBuilder);
}

impl KeyFields for MountPerms {
    fn key_fields(&self, k: &mut KeyBuilder) {
        let fmt = |v: Option<u32>| v.map(|n| n.to_string());
        k.opt_text("mode", fmt(self.mode).as_deref())
            .opt_text("uid", fmt(self.uid).as_deref())
            .opt_text("gid", fmt(self.gid).as_deref());
    }
}

impl KeyFields for ConfigOp {
    fn key_fields(&self, k: &mut KeyBuilder) {
        k.text("keyword", self.keyword());
        k.text("value", &json(self));
    }
}

/// A part of a build context a step reads: paths (with wildcards, as written) and excludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextSelection<'a> {
    /// Source paths relative to the context root; empty means the whole context.
    pub paths: Vec<&'a str>,
    /// `--exclude` patterns.
    pub exclude: &'a [String],
}

/// Resolves the digests a key needs from outside the step: other steps' state keys, images'
/// resolved manifest digests and build-context selections.
pub trait InputDigests {
    /// The state key of a step computed earlier.
    fn state_key(&self, id: StepId) -> Option<CacheKey>;
    /// The resolved manifest digest of an image.
    fn image_digest(&self, image: &ImageRef) -> Option<Digest>;
    /// The content digest of a selection of a build context.
    fn context_digest(
        &self,
        context: &ContextName,
        selection: &ContextSelection<'_>,
    ) -> Result<Digest, ContextError>;
    /// The content a remote source resolved to: the digest of an ADD URL's downloaded file, or
    /// of the commit id a git source's reference points at (BuildKit keys remote sources on
    /// their content, not their address).
    fn remote_digest(&self, source: &CopySource) -> Option<Digest>;
}

/// A ready [`InputDigests`] backed by maps, filled in as a build resolves its inputs.
#[derive(Debug, Default)]
pub struct KeyInputs {
    /// State keys of steps already keyed.
    pub states: BTreeMap<StepId, CacheKey>,
    /// Resolved manifest digests of images.
    pub images: BTreeMap<ImageRef, Digest>,
    /// Hashed build contexts by name.
    pub contexts: BTreeMap<ContextName, HashedContext>,
    /// Content digests of remote sources, by URL as written (git: `url#ref`).
    pub remotes: BTreeMap<String, Digest>,
}

impl InputDigests for KeyInputs {
    fn state_key(&self, id: StepId) -> Option<CacheKey> {
        self.states.get(&id).cloned()
    }

    fn image_digest(&self, image: &ImageRef) -> Option<Digest> {
        self.images.get(image).cloned()
    }

    fn context_digest(
        &self,
        context: &ContextName,
        selection: &ContextSelection<'_>,
    ) -> Result<Digest, ContextError> {
        match self.contexts.get(context) {
            Some(hashed) => hashed.digest_selection(selection),
            None => Err(ContextError::UnknownContext {
                name: context.as_str().to_string(),
            }),
        }
    }

    fn remote_digest(&self, source: &CopySource) -> Option<Digest> {
        let address = match source {
            CopySource::Url(u) => u.clone(),
            CopySource::Git { url, reference, .. } => match reference {
                Some(r) => format!("{url}#{r}"),
                None => url.clone(),
            },
            CopySource::Path(_) | CopySource::Heredoc { .. } => return None,
        };
        self.remotes.get(&address).cloned()
    }
}

/// Why a key could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An input's digest was not available.
    #[error("cannot compute the cache key of step {step}: {what} is not resolved")]
    Unresolved {
        /// The step whose key was requested.
        step: StepId,
        /// The missing input, described.
        what: String,
    },
    /// A build-context input could not be digested (e.g. a COPY source does not exist).
    #[error("failed to compute cache key of step {step}: {source}")]
    Context {
        /// The step whose key was requested.
        step: StepId,
        /// Why the context selection failed.
        #[source]
        source: ContextError,
    },
}

/// The keys of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepKey {
    /// The labelled inputs; `manifest.key()` is [`StepKey::key`].
    pub manifest: KeyManifest,
    /// The key the step's cache record is stored under.
    pub key: CacheKey,
    /// The key naming the filesystem state after the step (children's `parent`).
    pub state: CacheKey,
}

/// Compute the keys of step `id`; see the module documentation for the field list.
pub fn step_key(id: StepId, step: &Step, inputs: &dyn InputDigests) -> Result<StepKey, KeyError> {
    let unresolved = |what: String| KeyError::Unresolved { step: id, what };
    let parent_state = match step.parent {
        Some(p) => Some(
            inputs
                .state_key(p)
                .ok_or_else(|| unresolved(format!("parent step {p}")))?,
        ),
        None => None,
    };
    let linked = matches!(&step.op, Op::Copy(c) if c.link);
    let mut k = KeyBuilder::new();
    let parent_field = if linked {
        None
    } else {
        parent_state.as_ref().map(CacheKey::as_digest)
    };
    k.opt_digest("parent", parent_field);
    k.text("op", step.op.kind());
    match &step.op {
        Op::Source(s) => source_fields(&mut k, s, inputs),
        Op::Copy(c) => {
            k.scoped("copy", |k| copy_fields(k, c, inputs));
        }
        Op::Run(r) => {
            k.scoped("run", |k| run_fields(k, r, inputs));
        }
        Op::Config(c) => {
            k.nested("config", c);
        }
    }
    match k.problem.take() {
        Some(Problem::Unresolved(what)) => return Err(unresolved(what)),
        Some(Problem::Context(source)) => return Err(KeyError::Context { step: id, source }),
        None => {}
    }
    for (name, value) in &step.used_vars {
        k.text(&format!("var.{name}"), value);
    }
    let manifest = k.finish();
    let key = manifest.key();
    let state = match (&step.op, &parent_state) {
        (Op::Config(c), Some(parent)) if !matches!(c, ConfigOp::Workdir(_)) => parent.clone(),
        (Op::Copy(c), Some(parent)) if c.link => {
            let mut s = KeyBuilder::new();
            s.digest("parent", parent.as_digest())
                .digest("link", key.as_digest());
            s.finish().key()
        }
        _ => key.clone(),
    };
    Ok(StepKey {
        manifest,
        key,
        state,
    })
}

fn source_fields(k: &mut KeyBuilder, s: &SourceOp, inputs: &dyn InputDigests) {
    match s {
        SourceOp::Scratch { platform } => {
            k.text("source.kind", "scratch")
                .opt_text("source.platform", platform.as_deref());
        }
        SourceOp::Image {
            reference,
            platform,
        } => {
            k.text("source.kind", "image")
                .text("source.image", reference.as_str())
                .opt_text("source.platform", platform.as_deref());
            match inputs.image_digest(reference) {
                Some(d) => {
                    k.digest("source.image.digest", &d);
                }
                None => k.unresolved(format!("image {reference}")),
            }
        }
        SourceOp::NamedContext { name } => {
            let all = ContextSelection {
                paths: Vec::new(),
                exclude: &[],
            };
            k.text("source.kind", "context")
                .text("source.context", name.as_str());
            match inputs.context_digest(name, &all) {
                Ok(d) => {
                    k.digest("source.context.digest", &d);
                }
                Err(e) => k.context_failed(e),
            }
        }
    }
}

/// Fields naming an input filesystem: its kind, its name, and the digest of what is read.
fn fs_input_fields(
    k: &mut KeyBuilder,
    from: &FsInput,
    selection: ContextSelection<'_>,
    inputs: &dyn InputDigests,
) {
    match from {
        FsInput::Context(name) => {
            k.text("from.kind", "context")
                .text("from.context", name.as_str());
            match inputs.context_digest(name, &selection) {
                Ok(d) => {
                    k.digest("from.digest", &d);
                }
                Err(e) => k.context_failed(e),
            }
        }
        FsInput::Step(id) => {
            k.text("from.kind", "step");
            match inputs.state_key(*id) {
                Some(key) => {
                    k.digest("from.digest", key.as_digest());
                }
                None => k.unresolved(format!("input step {id}")),
            }
        }
        FsInput::Image(r) => {
            k.text("from.kind", "image").text("from.image", r.as_str());
            match inputs.image_digest(r) {
                Some(d) => {
                    k.digest("from.digest", &d);
                }
                None => k.unresolved(format!("image {r}")),
            }
        }
    }
}

fn copy_fields(k: &mut KeyBuilder, c: &CopyOp, inputs: &dyn InputDigests) {
    match &c.kind {
        CopyKind::Copy => {
            k.text("kind", "copy");
        }
        CopyKind::Add {
            unpack,
            keep_git_dir,
        } => {
            k.text("kind", "add")
                .opt_text("unpack", unpack.map(|u| if u { "true" } else { "false" }))
                .flag("keep_git_dir", *keep_git_dir);
        }
    }
    let paths: Vec<&str> = c
        .sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Path(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    if !paths.is_empty() {
        fs_input_fields(
            k,
            &c.from,
            ContextSelection {
                paths,
                exclude: &c.exclude,
            },
            inputs,
        );
    }
    for (i, s) in c.sources.iter().enumerate() {
        k.scoped(&format!("source[{i}]"), |k| match s {
            CopySource::Path(p) => {
                k.text("path", p);
            }
            CopySource::Heredoc { name, content } => {
                k.text("heredoc.name", name)
                    .text("heredoc.content", content);
            }
            CopySource::Url(u) => {
                k.text("url", u);
                remote_fields(k, s, inputs);
            }
            CopySource::Git {
                url,
                reference,
                subdir,
            } => {
                k.text("git.url", url)
                    .opt_text("git.ref", reference.as_deref())
                    .opt_text("git.subdir", subdir.as_deref());
                remote_fields(k, s, inputs);
            }
        });
    }
    k.text("dest", &c.dest).text("workdir", &c.workdir);
    k.opt_text("chown", c.chown.as_ref().map(|u| u.to_string()).as_deref());
    k.opt_text("chmod", c.chmod.as_ref().map(|m| m.to_string()).as_deref());
    k.flag("link", c.link)
        .list("exclude", &c.exclude)
        .flag("parents", c.parents);
    k.opt_digest("checksum", c.checksum.as_ref());
}

fn remote_fields(k: &mut KeyBuilder, source: &CopySource, inputs: &dyn InputDigests) {
    match inputs.remote_digest(source) {
        Some(d) => {
            k.digest("content", &d);
        }
        None => k.unresolved(format!("remote source {source:?}")),
    }
}

fn run_fields(k: &mut KeyBuilder, r: &RunOp, inputs: &dyn InputDigests) {
    match &r.command {
        Command::Exec(argv) => {
            k.text("command.form", "exec").list("command.argv", argv);
        }
        Command::Shell { shell, script } => {
            k.text("command.form", "shell")
                .list("command.shell", shell)
                .text("command.script", script);
        }
        Command::HeredocScript { shell, content } => {
            k.text("command.form", "heredoc")
                .list("command.shell", shell)
                .text("command.script", content);
        }
    }
    k.pairs("env", &r.env);
    k.opt_text("user", r.user.as_ref().map(|u| u.to_string()).as_deref());
    k.text("workdir", &r.workdir);
    k.text("network", &format!("{:?}", r.network).to_lowercase());
    k.text("security", &format!("{:?}", r.security).to_lowercase());
    for (i, m) in r.mounts.iter().enumerate() {
        k.scoped(&format!("mount[{i}]"), |k| {
            k.text("type", m.kind.type_name()).text("target", &m.target);
            match &m.kind {
                MountKind::Bind {
                    from,
                    source,
                    readwrite,
                } => {
                    fs_input_fields(
                        k,
                        from,
                        ContextSelection {
                            paths: vec![source.as_str()],
                            exclude: &[],
                        },
                        inputs,
                    );
                    k.text("source", source).flag("readwrite", *readwrite);
                }
                MountKind::Cache {
                    id,
                    from,
                    source,
                    sharing,
                    readonly,
                    perms,
                } => {
                    k.text("id", id);
                    if let Some(from) = from {
                        fs_input_fields(
                            k,
                            from,
                            ContextSelection {
                                paths: vec![source.as_str()],
                                exclude: &[],
                            },
                            inputs,
                        );
                    }
                    k.text("source", source)
                        .text("sharing", &format!("{sharing:?}").to_lowercase())
                        .flag("readonly", *readonly);
                    k.nested("perms", perms);
                }
                MountKind::Tmpfs { size } => {
                    k.opt_text("size", size.map(|s| s.to_string()).as_deref());
                }
                MountKind::Secret {
                    id,
                    required,
                    env,
                    perms,
                } => {
                    k.text("id", id)
                        .flag("required", *required)
                        .opt_text("env", env.as_deref());
                    k.nested("perms", perms);
                }
                MountKind::Ssh {
                    id,
                    required,
                    perms,
                } => {
                    k.text("id", id).flag("required", *required);
                    k.nested("perms", perms);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::graph::{CacheSharing, NetworkMode, Origin, RunMount, SecurityMode, UserSpec};

    #[derive(Default)]
    struct Inputs {
        states: BTreeMap<StepId, CacheKey>,
        images: BTreeMap<String, Digest>,
        context: Option<Digest>,
    }

    impl InputDigests for Inputs {
        fn state_key(&self, id: StepId) -> Option<CacheKey> {
            self.states.get(&id).cloned()
        }
        fn image_digest(&self, image: &ImageRef) -> Option<Digest> {
            self.images.get(image.as_str()).cloned()
        }
        fn context_digest(
            &self,
            _c: &ContextName,
            s: &ContextSelection<'_>,
        ) -> Result<Digest, ContextError> {
            match (s.paths.as_slice(), &self.context) {
                (["missing"], _) | (_, None) => Err(ContextError::NotFound {
                    path: s.paths.join(","),
                    excluded_by: None,
                }),
                (_, Some(d)) => Ok(d.clone()),
            }
        }
        fn remote_digest(&self, source: &CopySource) -> Option<Digest> {
            match source {
                CopySource::Url(u) if u.contains("unknown") => None,
                _ => Some(Digest::of(b"remote content")),
            }
        }
    }

    fn inputs() -> Inputs {
        let mut i = Inputs::default();
        i.states
            .insert(StepId(0), CacheKey::from_digest(Digest::of(b"parent")));
        i.states
            .insert(StepId(1), CacheKey::from_digest(Digest::of(b"other")));
        i.images.insert("alpine".into(), Digest::of(b"alpine"));
        i.context = Some(Digest::of(b"ctx"));
        i
    }

    fn copy() -> CopyOp {
        CopyOp {
            kind: CopyKind::Copy,
            from: FsInput::Context(ContextName::main()),
            sources: vec![CopySource::Path("src".into())],
            dest: "/app".into(),
            workdir: "/".into(),
            chown: None,
            chmod: None,
            link: false,
            exclude: vec![],
            parents: false,
            checksum: None,
        }
    }

    fn run() -> RunOp {
        RunOp {
            command: Command::Shell {
                shell: vec!["/bin/sh".into(), "-c".into()],
                script: "make".into(),
            },
            env: vec![("PATH".into(), "/bin".into())],
            proxy_env: vec![],
            user: None,
            workdir: "/".into(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            mounts: vec![],
        }
    }

    fn step(op: Op) -> Step {
        Step::new(op, Some(StepId(0)), Origin::default())
    }

    fn key_of(s: &Step) -> StepKey {
        step_key(StepId(9), s, &inputs()).expect("inputs resolve")
    }

    #[test]
    fn every_field_changes_the_key() {
        let base = step(Op::Copy(copy()));
        type Edit = fn(&mut Step);
        let edits: Vec<(&str, Edit)> = vec![
            ("parent", |s| s.parent = Some(StepId(1))),
            ("dest", |s| {
                if let Op::Copy(c) = &mut s.op {
                    c.dest = "/other".into()
                }
            }),
            ("source path", |s| {
                if let Op::Copy(c) = &mut s.op {
                    c.sources = vec![CopySource::Path("lib".into())]
                }
            }),
            ("chown", |s| {
                if let Op::Copy(c) = &mut s.op {
                    c.chown = UserSpec::parse("1000:1000")
                }
            }),
            ("exclude", |s| {
                if let Op::Copy(c) = &mut s.op {
                    c.exclude = vec!["*.md".into()]
                }
            }),
            ("kind", |s| {
                if let Op::Copy(c) = &mut s.op {
                    c.kind = CopyKind::Add {
                        unpack: None,
                        keep_git_dir: false,
                    }
                }
            }),
            ("from step", |s| {
                if let Op::Copy(c) = &mut s.op {
                    c.from = FsInput::Step(StepId(1))
                }
            }),
            ("used var", |s| {
                s.used_vars.insert("V".into(), "1".into());
            }),
        ];
        let base_key = key_of(&base).key;
        for (name, edit) in edits {
            let mut s = base.clone();
            edit(&mut s);
            assert_ne!(key_of(&s).key, base_key, "{name}");
        }
    }

    #[test]
    fn origin_does_not_enter_the_key() {
        let a = step(Op::Copy(copy()));
        let mut b = a.clone();
        b.origin.start_line = 42;
        b.origin.file = "/home/someone/Dockerfile".into();
        assert_eq!(key_of(&a), key_of(&b));
    }

    #[test]
    fn state_keys_follow_buildkit() {
        let label = step(Op::Config(ConfigOp::Label(vec![("a".into(), "b".into())])));
        let k = key_of(&label);
        assert_eq!(
            k.state,
            inputs().states[&StepId(0)],
            "label passes the parent state through"
        );
        assert_ne!(k.key, k.state);

        let workdir = key_of(&step(Op::Config(ConfigOp::Workdir("/app".into()))));
        assert_eq!(workdir.state, workdir.key, "workdir changes the filesystem");

        let mut linked = copy();
        linked.link = true;
        let on0 = key_of(&step(Op::Copy(linked.clone())));
        let mut on1 = step(Op::Copy(linked));
        on1.parent = Some(StepId(1));
        let on1 = key_of(&on1);
        assert_eq!(
            on0.key, on1.key,
            "--link layer does not depend on the parent"
        );
        assert_ne!(on0.state, on1.state, "but the resulting state does");
        assert_eq!(on0.manifest.get("parent"), Some(&FieldValue::Absent));
    }

    #[test]
    fn run_fields_and_secret_values() {
        let mut r = run();
        r.mounts.push(RunMount {
            target: "/run/secrets/tok".into(),
            kind: MountKind::Secret {
                id: "tok".into(),
                required: true,
                env: None,
                perms: MountPerms::default(),
            },
        });
        r.mounts.push(RunMount {
            target: "/root/.cache".into(),
            kind: MountKind::Cache {
                id: "c".into(),
                from: None,
                source: "".into(),
                sharing: CacheSharing::Locked,
                readonly: false,
                perms: MountPerms {
                    mode: Some(0o755),
                    uid: None,
                    gid: None,
                },
            },
        });
        r.mounts.push(RunMount {
            target: "/src".into(),
            kind: MountKind::Bind {
                from: FsInput::Image("alpine".parse().expect("valid")),
                source: "/".into(),
                readwrite: false,
            },
        });
        let k = key_of(&step(Op::Run(r)));
        let labels: Vec<&str> = k.manifest.fields.iter().map(|f| f.label.as_str()).collect();
        for want in [
            "run.command.script",
            "run.env",
            "run.mount[0].id",
            "run.mount[1].sharing",
            "run.mount[1].perms.mode",
            "run.mount[2].from.digest",
        ] {
            assert!(labels.contains(&want), "missing {want} in {labels:?}");
        }
        assert_eq!(
            k.manifest.get("run.mount[1].sharing"),
            Some(&FieldValue::text("locked"))
        );
        assert_eq!(k.manifest.key(), k.key);
    }

    #[test]
    fn proxy_env_does_not_enter_the_key() {
        let mut with_proxy = run();
        with_proxy.proxy_env = vec![("HTTP_PROXY".into(), "http://proxy:3128".into())];
        assert_eq!(
            key_of(&step(Op::Run(run()))).key,
            key_of(&step(Op::Run(with_proxy))).key
        );
    }

    #[test]
    fn unresolved_inputs_are_errors() {
        let cases: Vec<(&str, Step, &str)> = vec![
            (
                "parent",
                Step::new(Op::Run(run()), Some(StepId(5)), Origin::default()),
                "cannot compute the cache key of step #3: parent step #5 is not resolved",
            ),
            (
                "image source",
                Step::new(
                    Op::Source(SourceOp::Image {
                        reference: "nope".parse().expect("valid"),
                        platform: None,
                    }),
                    None,
                    Origin::default(),
                ),
                "cannot compute the cache key of step #3: image nope is not resolved",
            ),
            (
                "copy from unknown step",
                step(Op::Copy(CopyOp {
                    from: FsInput::Step(StepId(7)),
                    ..copy()
                })),
                "cannot compute the cache key of step #3: input step #7 is not resolved",
            ),
            (
                "missing context source",
                step(Op::Copy(CopyOp {
                    sources: vec![CopySource::Path("missing".into())],
                    ..copy()
                })),
                "failed to compute cache key of step #3: \"/missing\": not found",
            ),
            (
                "remote source not fetched",
                step(Op::Copy(CopyOp {
                    kind: CopyKind::Add {
                        unpack: None,
                        keep_git_dir: false,
                    },
                    sources: vec![CopySource::Url("https://unknown/x".into())],
                    ..copy()
                })),
                "cannot compute the cache key of step #3: remote source Url(\"https://unknown/x\") is not resolved",
            ),
        ];
        for (name, s, want) in cases {
            let err = step_key(StepId(3), &s, &inputs()).expect_err(name);
            assert_eq!(err.to_string(), want, "{name}");
        }
        // A failure does not leak into the next computation.
        assert!(step_key(StepId(3), &step(Op::Copy(copy())), &inputs()).is_ok());
    }

    #[test]
    fn remote_sources_are_keyed_on_content() {
        let add = |url: &str| {
            step(Op::Copy(CopyOp {
                kind: CopyKind::Add {
                    unpack: None,
                    keep_git_dir: false,
                },
                sources: vec![CopySource::Url(url.into())],
                ..copy()
            }))
        };
        let k = key_of(&add("https://example.com/a.tgz"));
        assert_eq!(
            k.manifest.get("copy.source[0].content"),
            Some(&FieldValue::Digest(Digest::of(b"remote content")))
        );
        assert_eq!(
            k.manifest.get("copy.from.kind"),
            None,
            "no path sources, no context read"
        );
    }

    #[test]
    fn key_inputs_resolve_from_maps() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("src"), "x").expect("write");
        let hashed = crate::context::hash_context(
            dir.path(),
            &crate::context::HashOptions {
                filter: &crate::context::NoFilter,
                stat_cache: None,
            },
        )
        .expect("hash");
        let mut inputs = KeyInputs::default();
        inputs
            .states
            .insert(StepId(0), CacheKey::from_digest(Digest::of(b"p")));
        inputs.contexts.insert(ContextName::main(), hashed);
        inputs
            .remotes
            .insert("https://x/y".into(), Digest::of(b"y"));
        let k = step_key(StepId(1), &step(Op::Copy(copy())), &inputs).expect("resolves");
        assert!(matches!(
            k.manifest.get("copy.from.digest"),
            Some(FieldValue::Digest(_))
        ));
        assert_eq!(
            inputs.remote_digest(&CopySource::Url("https://x/y".into())),
            Some(Digest::of(b"y"))
        );
        let named = CopyOp {
            from: FsInput::Context(ContextName::named("other")),
            ..copy()
        };
        let err = step_key(StepId(1), &step(Op::Copy(named)), &inputs).expect_err("unknown");
        assert!(matches!(err, KeyError::Context { .. }), "{err}");
    }

    #[test]
    fn keys_are_stable_across_runs() {
        // Pinned: a change here means every user's cache is invalidated; bump KEY_VERSION.
        let scratch = Step::new(
            Op::Source(SourceOp::Scratch { platform: None }),
            None,
            Origin::default(),
        );
        let k = step_key(StepId(0), &scratch, &inputs()).expect("scratch needs no inputs");
        assert_eq!(k.manifest.fields.len(), 4);
        assert_eq!(k.key, k.state);
        let again = step_key(StepId(0), &scratch, &inputs()).expect("scratch needs no inputs");
        assert_eq!(k.key, again.key);
    }
}
