//! OCI image layout directories (and their tar form), as BuildKit's OCI exporter writes them and
//! `umoci`, `skopeo oci:` and containerd read them:
//!
//! ```text
//! <dir>/
//! ├── oci-layout      {"imageLayoutVersion":"1.0.0"}
//! ├── index.json      one descriptor per tagged image
//! └── blobs/sha256/   manifests, configs and layers (the BlobStore)
//! ```
//!
//! Each `index.json` entry for a named image carries two annotations, as containerd's
//! `archive.WithManifest` writes them for BuildKit: `org.opencontainers.image.ref.name` = the tag
//! (`v1` for `app:v1`) and `io.containerd.image.name` = the full normalized name
//! (`docker.io/library/app:v1`). Adding an image whose tag is already in the index replaces that
//! entry and keeps all others. A reference resolves by tag, by full (or short) name, or by digest;
//! an image index found on the way is descended by platform.
//!
//! `index.json` is rewritten via a temp file and rename under the store's index lock; tar files
//! are written to a temp file beside the destination and renamed into place. Reading a layout tar
//! accepts only `oci-layout`, `index.json` and `blobs/<algo>/<hex>` members and verifies every
//! blob against its name while storing it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use crate::digest::Digest;
use crate::image::{
    our_digest, read_image, ImageError, StoredImage, DOCKER_MEDIA_TYPE_MANIFEST,
    DOCKER_MEDIA_TYPE_MANIFEST_LIST, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};
use crate::json::{to_canonical_vec, JsonError};
use crate::store::{BlobStore, LockMode, LockTarget, StoreError, EMPTY_INDEX, OCI_LAYOUT};
use crate::tar::entry::Entry;
use crate::tar::read::{for_each_entry, ReadError};
use crate::tar::write::{TarError, TarOptions, TarWriter};

/// Annotation holding the tag of an index entry.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the full image name of an index entry (containerd, BuildKit).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The registry of names without one.
const DEFAULT_DOMAIN: &str = "docker.io";

/// Why a layout operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// A blob store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading an image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Serializing `index.json` failed.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Writing a tar failed.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// Reading a tar failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `index.json` (or a nested index) does not parse.
    #[error("{path} is not a valid image index: {source}")]
    BadIndex {
        /// The file or blob.
        path: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// An image name does not parse.
    #[error("invalid image name `{name}`: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Nothing in the layout matches the reference.
    #[error("no image `{reference}` in {layout}")]
    NotFound {
        /// The reference asked for.
        reference: String,
        /// The layout directory.
        layout: PathBuf,
    },
    /// Several images match and no platform picks one.
    #[error("reference `{reference}` is ambiguous: {candidates:?}")]
    Ambiguous {
        /// The reference asked for.
        reference: String,
        /// The matching digests.
        candidates: Vec<String>,
    },
    /// A layout tar holds a member that is not part of a layout.
    #[error("layout tar member `{path}` is not part of an oci layout")]
    UnexpectedMember {
        /// The member.
        path: String,
    },
}

type Result<T, E = LayoutError> = std::result::Result<T, E>;

/// A normalized image name with a tag (`docker.io/library/app:v1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageName {
    domain: String,
    path: String,
    tag: String,
}

impl ImageName {
    /// The registry host (`docker.io`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path (`library/app`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag (`v1`; `latest` when none was given).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The repository without domain shortening (`docker.io/library/app`).
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form Docker shows (`app` for `docker.io/library/app`).
    pub fn familiar_repository(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        match self.path.strip_prefix("library/") {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    /// The short form with tag (`app:v1`), as `docker save` writes `RepoTags`.
    pub fn familiar(&self) -> String {
        format!("{}:{}", self.familiar_repository(), self.tag)
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.domain, self.path, self.tag)
    }
}

/// True for a tag Docker's reference grammar accepts: 1 to 128 of `[A-Za-z0-9_.-]`, not
/// starting with `.` or `-`.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

impl FromStr for ImageName {
    type Err = LayoutError;

    /// Parse as Docker's `reference.ParseNormalizedNamed` + `TagNameOnly` do (digests unsupported).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| LayoutError::BadName {
            name: s.to_string(),
            reason,
        };
        if s.contains('@') {
            return Err(bad("digest references cannot name an image in a layout"));
        }
        let (rest, tag) = match s.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t.to_string()),
            _ => (s, "latest".to_string()),
        };
        if !valid_tag(&tag) {
            return Err(bad("invalid tag"));
        }
        let (domain, path) = match rest.split_once('/') {
            Some((first, remainder)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), rest.to_string()),
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let valid_component = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        };
        if path.is_empty() || !path.split('/').all(valid_component) {
            return Err(bad(
                "repository must be lowercase letters, digits and separators",
            ));
        }
        if domain.is_empty() || domain.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(bad("invalid registry host"));
        }
        Ok(ImageName { domain, path, tag })
    }
}

/// The platform to pick from an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
    /// `v8`, or `None` to accept any variant.
    pub variant: Option<String>,
}

impl PlatformSpec {
    fn matches(&self, d: &Descriptor) -> bool {
        let Some(p) = d.platform() else { return false };
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.architecture
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p.variant().as_deref() == Some(v.as_str()))
    }
}

/// One problem [`OciLayout::fsck`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckProblem {
    /// The blob concerned.
    pub digest: String,
    /// `manifest`, `index`, `config`, `layer`.
    pub what: &'static str,
    /// What is wrong (missing, digest mismatch, size mismatch, unparsable).
    pub detail: String,
}

/// The result of [`OciLayout::fsck`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Blobs that were re-hashed and matched.
    pub verified: BTreeSet<Digest>,
    /// Everything that did not.
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    store: BlobStore,
}

impl OciLayout {
    /// Open the layout at `dir`, creating an empty one when absent.
    pub fn ensure(dir: impl AsRef<Path>) -> Result<Self> {
        Ok(OciLayout {
            store: BlobStore::ensure(dir)?,
        })
    }

    /// Open an existing layout.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Ok(OciLayout {
            store: BlobStore::open(dir)?,
        })
    }

    /// A layout over an already opened store.
    pub fn from_store(store: BlobStore) -> Self {
        OciLayout { store }
    }

    /// The blobs.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// The parsed `index.json` (an empty index when the file is missing).
    pub fn index(&self) -> Result<ImageIndex> {
        let path = self.root().join("index.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => EMPTY_INDEX.as_bytes().to_vec(),
            Err(source) => {
                return Err(LayoutError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes).map_err(|source| LayoutError::BadIndex {
            path: path.display().to_string(),
            source,
        })
    }

    /// Add the image to `index.json` under `name`, replacing an entry with the same tag.
    pub fn tag(&self, name: &ImageName, image: &StoredImage) -> Result<()> {
        self.add(image.descriptor()?, Some(name))
    }

    /// Add a manifest or index descriptor, named or not; an unnamed descriptor replaces an
    /// unnamed entry with the same digest.
    pub fn add(&self, descriptor: Descriptor, name: Option<&ImageName>) -> Result<()> {
        let mut d = descriptor;
        let mut annotations: HashMap<String, String> = d.annotations().clone().unwrap_or_default();
        if let Some(name) = name {
            annotations.insert(ANNOTATION_REF_NAME.to_string(), name.tag().to_string());
            annotations.insert(ANNOTATION_IMAGE_NAME.to_string(), name.to_string());
        }
        d.set_annotations((!annotations.is_empty()).then_some(annotations));
        self.insert(d)
    }

    /// Put `d` into the index as is: it replaces the entry with the same tag, or (untagged) an
    /// untagged entry with the same digest.
    fn insert(&self, d: Descriptor) -> Result<()> {
        let ref_of = |e: &Descriptor| {
            e.annotations()
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_REF_NAME).cloned())
        };
        let key = ref_of(&d);
        self.update_index(|entries| {
            match &key {
                Some(tag) => entries.retain(|e| ref_of(e).as_ref() != Some(tag)),
                None => entries.retain(|e| ref_of(e).is_some() || e.digest() != d.digest()),
            }
            entries.push(d);
        })
    }

    /// Remove the entry with this tag; true when one was removed.
    pub fn untag(&self, tag: &str) -> Result<bool> {
        let mut removed = false;
        self.update_index(|entries| {
            let before = entries.len();
            entries.retain(|e| {
                e.annotations()
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_REF_NAME))
                    .map(String::as_str)
                    != Some(tag)
            });
            removed = entries.len() != before;
        })?;
        Ok(removed)
    }

    fn update_index(&self, f: impl FnOnce(&mut Vec<Descriptor>)) -> Result<()> {
        let _lock = self.store.lock(LockTarget::Index, LockMode::Exclusive)?;
        let mut index = self.index()?;
        let mut entries = index.manifests().clone();
        f(&mut entries);
        index.set_manifests(entries);
        index.set_media_type(Some(MediaType::ImageIndex));
        index.set_schema_version(2);
        let bytes = to_canonical_vec(&index)?;
        write_atomic(&self.root().join("index.json"), &bytes)
    }

    /// The index entry a reference names: a tag (`v1`), a name (`app:v1`,
    /// `docker.io/library/app:v1`) or a digest (`sha256:…`, also of blobs not in the index).
    pub fn resolve_entry(&self, reference: &str) -> Result<Descriptor> {
        let index = self.index()?;
        if let Ok(digest) = Digest::from_str(reference) {
            if let Some(d) = index
                .manifests()
                .iter()
                .find(|d| d.digest().to_string() == reference)
            {
                return Ok(d.clone());
            }
            if self.store.has(&digest) {
                let size = self.store.size(&digest)?;
                let media = sniff_media_type(&self.store.read(&digest)?);
                let spec = crate::image::spec_digest(&digest)?;
                return Ok(Descriptor::new(MediaType::from(media.as_str()), size, spec));
            }
            return Err(self.not_found(reference));
        }
        let annotation =
            |d: &Descriptor, key: &str| d.annotations().as_ref().and_then(|a| a.get(key).cloned());
        let mut found: Vec<&Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| annotation(d, ANNOTATION_REF_NAME).as_deref() == Some(reference))
            .collect();
        if found.is_empty() {
            let full = ImageName::from_str(reference).ok().map(|n| n.to_string());
            found = index
                .manifests()
                .iter()
                .filter(|d| {
                    let name = annotation(d, ANNOTATION_IMAGE_NAME);
                    name.as_deref() == Some(reference) || (full.is_some() && name == full)
                })
                .collect();
        }
        match found.as_slice() {
            [] => Err(self.not_found(reference)),
            [one] => Ok((*one).clone()),
            many => Err(LayoutError::Ambiguous {
                reference: reference.to_string(),
                candidates: many.iter().map(|d| d.digest().to_string()).collect(),
            }),
        }
    }

    /// The manifest digest a reference resolves to, descending image indexes by `platform` (or
    /// into their only manifest).
    pub fn resolve(&self, reference: &str, platform: Option<&PlatformSpec>) -> Result<Digest> {
        let mut d = self.resolve_entry(reference)?;
        for _ in 0..8 {
            let media = d.media_type().to_string();
            if media != MEDIA_TYPE_INDEX && media != DOCKER_MEDIA_TYPE_MANIFEST_LIST {
                return Ok(our_digest(&d, "manifest")?);
            }
            let digest = our_digest(&d, "index")?;
            let index: ImageIndex =
                serde_json::from_slice(&self.store.read(&digest)?).map_err(|source| {
                    LayoutError::BadIndex {
                        path: digest.to_string(),
                        source,
                    }
                })?;
            let candidates: Vec<&Descriptor> = match platform {
                Some(p) => index.manifests().iter().filter(|m| p.matches(m)).collect(),
                None => index.manifests().iter().collect(),
            };
            d = match candidates.as_slice() {
                [] => return Err(self.not_found(reference)),
                [one] => (*one).clone(),
                many => {
                    return Err(LayoutError::Ambiguous {
                        reference: reference.to_string(),
                        candidates: many.iter().map(|m| m.digest().to_string()).collect(),
                    })
                }
            };
        }
        Err(self.not_found(reference))
    }

    /// Load the image a reference names.
    pub fn image(&self, reference: &str, platform: Option<&PlatformSpec>) -> Result<StoredImage> {
        let digest = self.resolve(reference, platform)?;
        Ok(read_image(&self.store, &digest)?)
    }

    /// Re-hash every blob reachable from `index.json` and check it against its descriptor.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let index = self.index()?;
        for d in index.manifests() {
            self.fsck_descriptor(d, "manifest", &mut report, 0);
        }
        Ok(report)
    }

    fn fsck_descriptor(
        &self,
        d: &Descriptor,
        what: &'static str,
        report: &mut FsckReport,
        depth: usize,
    ) {
        let problem = |report: &mut FsckReport, detail: String| {
            report.problems.push(FsckProblem {
                digest: d.digest().to_string(),
                what,
                detail,
            });
        };
        let Ok(digest) = our_digest(d, what) else {
            problem(report, "unsupported digest".to_string());
            return;
        };
        if !report.verified.contains(&digest) {
            match self.store.verify(&digest) {
                Ok(size) if size == d.size() => {
                    report.verified.insert(digest.clone());
                }
                Ok(size) => {
                    return problem(report, format!("size {size}, descriptor says {}", d.size()))
                }
                Err(e) => return problem(report, e.to_string()),
            }
        }
        let media = d.media_type().to_string();
        let is_index = media == MEDIA_TYPE_INDEX || media == DOCKER_MEDIA_TYPE_MANIFEST_LIST;
        let is_manifest = media == MEDIA_TYPE_MANIFEST || media == DOCKER_MEDIA_TYPE_MANIFEST;
        if !(is_index || is_manifest) || depth > 8 {
            return;
        }
        let bytes = match self.store.read(&digest) {
            Ok(b) => b,
            Err(e) => return problem(report, e.to_string()),
        };
        if is_index {
            match serde_json::from_slice::<ImageIndex>(&bytes) {
                Ok(index) => {
                    for m in index.manifests() {
                        self.fsck_descriptor(m, "manifest", report, depth + 1);
                    }
                }
                Err(e) => problem(report, format!("unparsable index: {e}")),
            }
            return;
        }
        match serde_json::from_slice::<ImageManifest>(&bytes) {
            Ok(m) => {
                self.fsck_descriptor(m.config(), "config", report, depth + 1);
                for l in m.layers() {
                    self.fsck_descriptor(l, "layer", report, depth + 1);
                }
            }
            Err(e) => problem(report, format!("unparsable manifest: {e}")),
        }
    }

    /// Every blob reachable from the given index entries (manifests, nested indexes, configs,
    /// layers), sorted.
    pub fn reachable(&self, entries: &[Descriptor]) -> Result<BTreeSet<Digest>> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<Descriptor> = entries.to_vec();
        while let Some(d) = todo.pop() {
            let digest = our_digest(&d, "descriptor")?;
            if !out.insert(digest.clone()) {
                continue;
            }
            let media = d.media_type().to_string();
            if media == MEDIA_TYPE_INDEX || media == DOCKER_MEDIA_TYPE_MANIFEST_LIST {
                let index: ImageIndex = serde_json::from_slice(&self.store.read(&digest)?)
                    .map_err(|source| LayoutError::BadIndex {
                        path: digest.to_string(),
                        source,
                    })?;
                todo.extend(index.manifests().iter().cloned());
            } else if media == MEDIA_TYPE_MANIFEST || media == DOCKER_MEDIA_TYPE_MANIFEST {
                let m: ImageManifest =
                    serde_json::from_slice(&self.store.read(&digest)?).map_err(|source| {
                        ImageError::Parse {
                            what: "manifest",
                            digest: digest.clone(),
                            source,
                        }
                    })?;
                todo.push(m.config().clone());
                todo.extend(m.layers().iter().cloned());
            }
        }
        Ok(out)
    }

    /// Write this layout as a tar file at `dest` (temp file + rename). With `references` empty
    /// the whole index goes in; otherwise only the entries those references name.
    pub fn write_tar(&self, dest: &Path, references: &[&str]) -> Result<()> {
        let entries = if references.is_empty() {
            self.index()?.manifests().clone()
        } else {
            references
                .iter()
                .map(|r| self.resolve_entry(r))
                .collect::<Result<Vec<_>>>()?
        };
        let blobs = self.reachable(&entries)?;
        let mut index = self.index()?;
        index.set_manifests(entries);
        let index_bytes = to_canonical_vec(&index)?;
        write_file_atomic(dest, |file| {
            let mut tar = TarWriter::new(file, TarOptions::default());
            append_layout(
                &mut tar,
                &self.store,
                &blobs,
                &index_bytes,
                &BTreeMap::new(),
            )?;
            tar.finish()?;
            Ok(())
        })
    }

    /// Read a layout tar (as [`Self::write_tar`] or `skopeo copy oci-archive:` write it) into this
    /// layout: blobs are verified and stored, index entries merged (same tag replaced). Returns the
    /// imported index entries.
    pub fn import_tar<R: Read>(&self, tar: R) -> Result<Vec<Descriptor>> {
        let mut index_bytes = None;
        for_each_entry(tar, |entry: &Entry, data: &mut dyn Read| -> Result<()> {
            let path = entry.path.as_str();
            if entry.is_dir() || path == "oci-layout" {
                return Ok(());
            }
            if path == "index.json" && entry.is_file() {
                let mut bytes = Vec::new();
                data.read_to_end(&mut bytes)
                    .map_err(|source| LayoutError::Io {
                        op: "read index.json from",
                        path: path.into(),
                        source,
                    })?;
                index_bytes = Some(bytes);
                return Ok(());
            }
            let digest = path
                .strip_prefix("blobs/")
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(algo, hex)| Digest::from_str(&format!("{algo}:{hex}")).ok());
            match digest {
                Some(digest) if entry.is_file() => {
                    store_verified(&self.store, &digest, entry.size(), data)
                }
                _ => Err(LayoutError::UnexpectedMember {
                    path: path.to_string(),
                }),
            }
        })?;
        let Some(bytes) = index_bytes else {
            return Err(LayoutError::UnexpectedMember {
                path: "index.json (missing)".to_string(),
            });
        };
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|source| LayoutError::BadIndex {
                path: "index.json".to_string(),
                source,
            })?;
        for d in index.manifests() {
            self.insert(d.clone())?;
        }
        Ok(index.manifests().clone())
    }

    fn not_found(&self, reference: &str) -> LayoutError {
        LayoutError::NotFound {
            reference: reference.to_string(),
            layout: self.root().to_path_buf(),
        }
    }
}

/// Append `oci-layout`, `index.json` and the given blobs to `tar` (crate-internal; the docker
/// archive adds `manifest.json` and `repositories` through `extra`, which must be named so they
/// sort after `index.json`).
pub(crate) fn append_layout<W: Write>(
    tar: &mut TarWriter<W>,
    store: &BlobStore,
    blobs: &BTreeSet<Digest>,
    index_bytes: &[u8],
    extra: &BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    let mut files: BTreeMap<String, Vec<u8>> = extra.clone();
    files.insert("index.json".to_string(), index_bytes.to_vec());
    files.insert("oci-layout".to_string(), OCI_LAYOUT.as_bytes().to_vec());
    tar.append(&Entry::dir("blobs"), &mut io::empty())?;
    tar.append(&Entry::dir("blobs/sha256"), &mut io::empty())?;
    for digest in blobs {
        let size = store.size(digest)?;
        let mut reader = store.open_verified(digest)?;
        tar.append(
            &Entry::file(format!("blobs/sha256/{}", digest.hex()), size),
            &mut reader,
        )?;
    }
    let mut names: Vec<&String> = files.keys().collect();
    names.sort_by(|a, b| crate::tar::entry::compare_paths(a, b));
    for name in names {
        let bytes = &files[name];
        tar.append(
            &Entry::file(name.clone(), bytes.len() as u64),
            &mut &bytes[..],
        )?;
    }
    Ok(())
}

/// Stream `size` bytes into the store, failing unless they hash to `digest`.
pub(crate) fn store_verified(
    store: &BlobStore,
    digest: &Digest,
    size: u64,
    data: &mut dyn Read,
) -> Result<()> {
    if store.has(digest) {
        return Ok(());
    }
    let mut w = store.writer()?;
    io::copy(&mut data.take(size), &mut w).map_err(|source| LayoutError::Io {
        op: "store blob",
        path: store.blob_path(digest),
        source,
    })?;
    w.complete_verified(digest, size)?;
    Ok(())
}

/// Guess a blob's media type from its JSON (`mediaType`, else `manifests` → index).
fn sniff_media_type(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null);
    match v.get("mediaType").and_then(|m| m.as_str()) {
        Some(m) => m.to_string(),
        None if v.get("manifests").is_some() => MEDIA_TYPE_INDEX.to_string(),
        None => MEDIA_TYPE_MANIFEST.to_string(),
    }
}

/// Write `bytes` to `path` through a temp file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_atomic(path, |f| {
        f.write_all(bytes).map_err(|source| LayoutError::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Create `path` by filling a temp file beside it with `fill`, syncing and renaming it.
pub(crate) fn write_file_atomic(
    path: &Path,
    fill: impl FnOnce(&mut fs::File) -> Result<()>,
) -> Result<()> {
    let io = |op, source| LayoutError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&dir)
        .map_err(|e| io("create temp file for", e))?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
    let file = tmp.persist(path).map_err(|e| io("rename into", e.error))?;
    // Temp files are 0600; a published file is as readable as any other output.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(|e| io("chmod", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input, then the expected full name, tag and familiar form (`None`: rejected).
    type NameCase = (
        &'static str,
        Option<(&'static str, &'static str, &'static str)>,
    );

    #[test]
    fn tags_follow_the_reference_grammar() {
        let long = "a".repeat(128);
        let too_long = "a".repeat(129);
        let cases = [
            ("latest", true),
            ("_x", true),
            ("v1.2-rc_3", true),
            (long.as_str(), true),
            (too_long.as_str(), false),
            ("", false),
            (".x", false),
            ("-x", false),
            ("a/b", false),
            ("a:b", false),
            ("é", false),
        ];
        for (tag, want) in cases {
            assert_eq!(valid_tag(tag), want, "{tag:?}");
        }
    }

    #[test]
    fn image_name_table() {
        let cases: &[NameCase] = &[
            ("app:v1", Some(("docker.io/library/app:v1", "v1", "app:v1"))),
            (
                "app",
                Some(("docker.io/library/app:latest", "latest", "app:latest")),
            ),
            (
                "user/app:1.0",
                Some(("docker.io/user/app:1.0", "1.0", "user/app:1.0")),
            ),
            (
                "localhost:5000/a/b:t",
                Some(("localhost:5000/a/b:t", "t", "localhost:5000/a/b:t")),
            ),
            (
                "ghcr.io/o/r",
                Some(("ghcr.io/o/r:latest", "latest", "ghcr.io/o/r:latest")),
            ),
            (
                "localhost/x",
                Some(("localhost/x:latest", "latest", "localhost/x:latest")),
            ),
            ("App:v1", None),
            ("app:", None),
            ("app@sha256:00", None),
            ("a//b", None),
            ("app:-x", None),
        ];
        for (input, want) in cases {
            let got = ImageName::from_str(input).ok();
            match (got, want) {
                (Some(n), Some((full, tag, familiar))) => {
                    assert_eq!(
                        (n.to_string().as_str(), n.tag(), n.familiar().as_str()),
                        (*full, *tag, *familiar)
                    );
                }
                (None, None) => {}
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}
