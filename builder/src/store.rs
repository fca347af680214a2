//! The local image store: where `rbuild build` puts images and everything it keeps between
//! builds, in one directory that is itself an OCI image layout (so `umoci`, `skopeo oci:` read it
//! directly):
//!
//! ```text
//! <root>/
//! ├── oci-layout, index.json, blobs/sha256/   the OCI layout: one index entry per image name
//! ├── cache-v1/           the step cache index (crate::cache::CacheIndex)
//! ├── context-v1/         stat caches of build contexts (crate::context::StatCache)
//! ├── snapshots-v1/       unpacked layers, one directory per diffID (<hex>/)
//! ├── cache-mounts-v1/    RUN --mount=type=cache directories
//! └── logs/               full output of RUN steps
//! ```
//!
//! Index entries follow containerd's convention (as BuildKit's image exporter writes them):
//! `io.containerd.image.name` holds the full normalized name (`docker.io/library/app:v1`) and
//! `org.opencontainers.image.ref.name` the tag. Unlike a plain layout, where the tag alone names an
//! entry, the store keys entries by the full name, so `app:v1` and `web:v1` live side by side.
//! `index.json` is rewritten through a temp file and a rename under the layout's index lock.
//!
//! Snapshots are published atomically: a layer is unpacked into a temp directory beside its
//! final name and renamed into place, so a directory named by a diffID is always complete.
//!
//! Locks: a build holds the blob store's lock (`.rbuild-lock`) shared from its first cache
//! lookup until its image is in the index; [`Store::prune`] holds it exclusive for its whole
//! run (keep-set computation, sweep, snapshot removal), so it waits for running builds and they
//! wait for it. `index.json` updates take the separate index lock, always after the blob lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use rbuild_layers::digest::{DiffId, Digest};
use rbuild_layers::image::{read_image, History, StoredImage};
use rbuild_layers::json::to_canonical_vec;
use rbuild_layers::oci_layout::{
    ImageName, LayoutError, OciLayout, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use rbuild_layers::store::{BlobStore, LockMode, LockTarget};

use crate::cache::index::INDEX_DIR;
use crate::cache::CacheRecord;
use crate::context::statcache::STAT_CACHE_DIR;

/// The snapshot directory's name under the store root.
pub const SNAPSHOT_DIR: &str = "snapshots-v1";
/// The cache-mount directory's name under the store root.
pub const CACHE_MOUNT_DIR: &str = "cache-mounts-v1";
/// The RUN log directory's name under the store root.
pub const LOG_DIR: &str = "logs";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The OCI layout (index or blobs) failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The blob store failed.
    #[error(transparent)]
    Blobs(#[from] rbuild_layers::store::StoreError),
    /// Reading a stored image failed.
    #[error(transparent)]
    Image(#[from] rbuild_layers::image::ImageError),
    /// Unpacking a layer failed.
    #[error("unpack layer {diff_id} into {path}: {reason}")]
    Unpack {
        /// The layer.
        diff_id: DiffId,
        /// The snapshot directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
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
    /// No image in the store has this name or digest.
    #[error("no image {name} in the local store")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// A name is not a valid image name.
    #[error("invalid image name {name}: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// Why.
        reason: String,
    },
    /// A prefix of an image id matches several images.
    #[error("image id prefix {prefix} is ambiguous: {candidates:?}")]
    Ambiguous {
        /// The prefix.
        prefix: String,
        /// The matching manifest digests.
        candidates: Vec<String>,
    },
}

impl StoreError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One named image, as `rbuild images` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The repository in Docker's short form (`app`, `ghcr.io/o/r`).
    pub name: String,
    /// The tag.
    pub tag: String,
    /// The manifest digest.
    pub digest: Digest,
    /// The config digest (the image ID).
    pub config_digest: Digest,
    /// Config plus compressed layer sizes, in bytes.
    pub size: u64,
    /// The config's `created` time, if any.
    pub created: Option<String>,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs deleted.
    pub blobs: u64,
    /// Bytes freed (blobs, snapshots and cache files).
    pub bytes: u64,
    /// Cache records deleted.
    pub cache_entries: u64,
}

/// The local image store; see the module documentation.
#[derive(Debug, Clone)]
pub struct Store {
    layout: OciLayout,
}

impl Store {
    /// Open the store at `root`, creating it (and its sub-directories) when absent.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let layout = OciLayout::ensure(root)?;
        for dir in [
            INDEX_DIR,
            STAT_CACHE_DIR,
            SNAPSHOT_DIR,
            CACHE_MOUNT_DIR,
            LOG_DIR,
        ] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(|e| StoreError::io("create dir", &path, e))?;
        }
        Ok(Store { layout })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// The OCI layout view of the store.
    pub fn layout(&self) -> &OciLayout {
        &self.layout
    }

    /// The blobs.
    pub fn blobs(&self) -> &BlobStore {
        self.layout.store()
    }

    /// Where the unpacked layer `diff_id` lives (whether or not it exists yet).
    pub fn snapshot_path(&self, diff_id: &DiffId) -> PathBuf {
        self.root().join(SNAPSHOT_DIR).join(diff_id.0.hex())
    }

    /// Every named image, sorted by name then tag.
    pub fn images(&self) -> Result<Vec<ImageSummary>> {
        let index = self.layout.index()?;
        let mut out = Vec::new();
        for d in index.manifests() {
            let Some(name) = entry_name(d) else { continue };
            let digest = descriptor_digest(d)?;
            let image = read_image(self.blobs(), &digest)?;
            let size = image.manifest.config().size()
                + image
                    .manifest
                    .layers()
                    .iter()
                    .map(|l| l.size())
                    .sum::<u64>();
            out.push(ImageSummary {
                name: name.familiar_repository(),
                tag: name.tag().to_string(),
                digest,
                config_digest: image.config_digest.clone(),
                size,
                created: image.config.created.clone(),
            });
        }
        out.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
        Ok(out)
    }

    /// The image a name (`app`, `app:v1`, `docker.io/library/app:v1`), a manifest or config
    /// digest (`sha256:…`), or an unambiguous hex prefix of either (at least 4 digits) names.
    pub fn resolve(&self, name: &str) -> Result<StoredImage> {
        let digest = self.resolve_digest(name)?;
        Ok(read_image(self.blobs(), &digest)?)
    }

    /// The manifest digest [`Store::resolve`] would load.
    pub fn resolve_digest(&self, name: &str) -> Result<Digest> {
        let index = self.layout.index()?;
        if let Ok(parsed) = ImageName::from_str(name) {
            if let Some(d) = index
                .manifests()
                .iter()
                .find(|d| entry_name(d).as_ref() == Some(&parsed))
            {
                return descriptor_digest(d);
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let is_hex = hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex {
            return Err(StoreError::NotFound {
                name: name.to_string(),
            });
        }
        let mut found: BTreeSet<Digest> = BTreeSet::new();
        for d in index.manifests() {
            let digest = descriptor_digest(d)?;
            let config = d.digest().to_string();
            let config_hex = match read_image(self.blobs(), &digest) {
                Ok(image) => image.config_digest.hex().to_string(),
                Err(_) => config,
            };
            if digest.hex().starts_with(hex) || config_hex.starts_with(hex) {
                found.insert(digest);
            }
        }
        if found.is_empty() && hex.len() == 64 {
            if let Ok(d) = format!("sha256:{hex}").parse::<Digest>() {
                if self.blobs().has(&d) {
                    found.insert(d);
                }
            }
        }
        match found.len() {
            0 => Err(StoreError::NotFound {
                name: name.to_string(),
            }),
            1 => Ok(found.into_iter().next().expect("one element")),
            _ => Err(StoreError::Ambiguous {
                prefix: name.to_string(),
                candidates: found.iter().map(|d| d.to_string()).collect(),
            }),
        }
    }

    /// The manifest and config JSON of an image, exactly as stored.
    pub fn inspect(&self, name: &str) -> Result<(serde_json::Value, serde_json::Value)> {
        let image = self.resolve(name)?;
        let manifest = self.blobs().read(&image.manifest_digest)?;
        let parse = |bytes: &[u8], what: &str| {
            serde_json::from_slice(bytes).map_err(|e| StoreError::BadName {
                name: name.to_string(),
                reason: format!("stored {what} is not json: {e}"),
            })
        };
        Ok((
            parse(&manifest, "manifest")?,
            parse(&image.config_bytes, "config")?,
        ))
    }

    /// The history entries of an image, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<History>> {
        Ok(self.resolve(name)?.config.history)
    }

    /// Name the image `src` resolves to also `dst`; returns the normalized new name.
    pub fn tag(&self, src: &str, dst: &str) -> Result<ImageName> {
        let image = self.resolve(src)?;
        let name = parse_name(dst)?;
        self.put_name(&name, &image)?;
        Ok(name)
    }

    /// Store `image` (its blobs already in the store) under `name`, replacing any image of that
    /// name.
    pub fn put_name(&self, name: &ImageName, image: &StoredImage) -> Result<()> {
        let mut d = image.descriptor()?;
        let mut annotations = std::collections::HashMap::new();
        annotations.insert(ANNOTATION_REF_NAME.to_string(), name.tag().to_string());
        annotations.insert(ANNOTATION_IMAGE_NAME.to_string(), name.to_string());
        d.set_annotations(Some(annotations));
        self.update_index(|entries| {
            entries.retain(|e| entry_name(e).as_ref() != Some(name));
            entries.push(d);
        })
    }

    /// Remove the name `name` (the blobs stay until [`Store::prune`]); a digest removes every
    /// name pointing at that image. Returns the names removed.
    pub fn rmi(&self, name: &str) -> Result<Vec<ImageName>> {
        let index = self.layout.index()?;
        let targets: Vec<ImageName> = match ImageName::from_str(name) {
            Ok(parsed)
                if index
                    .manifests()
                    .iter()
                    .any(|d| entry_name(d).as_ref() == Some(&parsed)) =>
            {
                vec![parsed]
            }
            _ => {
                let digest = self.resolve_digest(name)?;
                index
                    .manifests()
                    .iter()
                    .filter(|d| d.digest().to_string() == digest.to_string())
                    .filter_map(entry_name)
                    .collect()
            }
        };
        if targets.is_empty() {
            return Err(StoreError::NotFound {
                name: name.to_string(),
            });
        }
        self.update_index(|entries| {
            entries.retain(|e| entry_name(e).is_none_or(|n| !targets.contains(&n)));
        })?;
        Ok(targets)
    }

    /// Free space. Always: blobs no image or cache record references, and cache records whose
    /// blobs are gone. With `all`: the whole build cache too (cache records, snapshots, stat
    /// caches, cache mounts and logs), keeping only what named images reference.
    pub fn prune(&self, all: bool) -> Result<PruneReport> {
        // Exclusive against builds (which hold the lock shared from their first cache lookup
        // until their image is tagged), so the keep-set cannot go stale while we sweep.
        let _lock = self.blobs().lock(LockTarget::Blobs, LockMode::Exclusive)?;
        let mut report = PruneReport::default();
        let root = self.root().to_path_buf();
        let records_dir = root.join(INDEX_DIR);
        let mut keep: BTreeSet<Digest> = BTreeSet::new();
        let index = self.layout.index()?;
        keep.extend(self.layout.reachable(index.manifests())?);
        if all {
            report.cache_entries += count_files(&records_dir.join("records"))?;
            for dir in [
                INDEX_DIR,
                SNAPSHOT_DIR,
                STAT_CACHE_DIR,
                CACHE_MOUNT_DIR,
                LOG_DIR,
            ] {
                let path = root.join(dir);
                report.bytes += dir_size(&path)?;
                remove_dir_if_present(&path)?;
                fs::create_dir_all(&path).map_err(|e| StoreError::io("create dir", &path, e))?;
            }
        } else {
            for (path, record) in cache_records(&records_dir.join("records"))? {
                match &record.layer {
                    Some(layer) if !self.blobs().has(&layer.digest) => {
                        let size = file_size(&path);
                        fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
                        report.cache_entries += 1;
                        report.bytes += size;
                    }
                    Some(layer) => {
                        keep.insert(layer.digest.clone());
                    }
                    None => {}
                }
            }
        }
        let (blobs, bytes) = self.sweep_blobs(&keep)?;
        report.blobs = blobs;
        report.bytes += bytes;
        if !all {
            // Snapshots of layers whose blob is gone can never be asked for again by a hit.
            let kept_diff_ids = self.kept_diff_ids(&keep)?;
            let snaps = root.join(SNAPSHOT_DIR);
            for name in sorted_names(&snaps)? {
                if name.starts_with('.') || !kept_diff_ids.contains(&name) {
                    let path = snaps.join(&name);
                    report.bytes += dir_size(&path)?;
                    remove_dir_if_present(&path)?;
                }
            }
        }
        Ok(report)
    }

    /// Delete blobs not in `keep` and abandoned temp files (as `BlobStore::gc` does, but under
    /// the exclusive lock the caller already holds); returns the count and bytes removed.
    fn sweep_blobs(&self, keep: &BTreeSet<Digest>) -> Result<(u64, u64)> {
        let dir = self.blobs().blobs_dir().to_path_buf();
        let now = std::time::SystemTime::now();
        let (mut count, mut bytes) = (0, 0);
        for name in sorted_names(&dir)? {
            let path = dir.join(&name);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if name.starts_with(rbuild_layers::store::writer::TEMP_PREFIX) {
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if age > rbuild_layers::store::TEMP_MAX_AGE {
                    fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
                    bytes += meta.len();
                }
                continue;
            }
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            if !keep.contains(&digest) {
                fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
                count += 1;
                bytes += meta.len();
            }
        }
        Ok((count, bytes))
    }

    /// Hex diffIDs of layers still referenced by images or cache records.
    fn kept_diff_ids(&self, keep: &BTreeSet<Digest>) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for (_, record) in cache_records(&self.root().join(INDEX_DIR).join("records"))? {
            if let Some(layer) = record.layer {
                if keep.contains(&layer.digest) {
                    out.insert(layer.diff_id.0.hex().to_string());
                }
            }
        }
        let index = self.layout.index()?;
        for d in index.manifests() {
            if let Ok(digest) = descriptor_digest(d) {
                if let Ok(image) = read_image(self.blobs(), &digest) {
                    for id in &image.config.rootfs.diff_ids {
                        out.insert(id.0.hex().to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    fn update_index(&self, f: impl FnOnce(&mut Vec<Descriptor>)) -> Result<()> {
        let _lock = self.blobs().lock(LockTarget::Index, LockMode::Exclusive)?;
        let mut index: ImageIndex = self.layout.index()?;
        let mut entries = index.manifests().clone();
        f(&mut entries);
        entries.sort_by_key(|e| entry_name(e).map(|n| n.to_string()));
        index.set_manifests(entries);
        index.set_media_type(Some(MediaType::ImageIndex));
        index.set_schema_version(2);
        let bytes = to_canonical_vec(&index).map_err(LayoutError::from)?;
        write_atomic(&self.root().join("index.json"), &bytes)
    }
}

/// Parse a user-given image name.
pub fn parse_name(name: &str) -> Result<ImageName> {
    ImageName::from_str(name).map_err(|e| StoreError::BadName {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

/// The full name of an index entry (containerd's annotation), if it has a valid one.
fn entry_name(d: &Descriptor) -> Option<ImageName> {
    let annotations = d.annotations().as_ref()?;
    let name = annotations.get(ANNOTATION_IMAGE_NAME).or_else(|| {
        // Entries written by other tools may carry only a full reference in ref.name.
        annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|r| r.contains(':') || r.contains('/'))
    })?;
    ImageName::from_str(name).ok()
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    let text = d.digest().to_string();
    text.parse::<Digest>().map_err(|e| StoreError::BadName {
        name: text.clone(),
        reason: format!("index entry digest: {e}"),
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| StoreError::io("create temp file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| StoreError::io("write", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| StoreError::io("sync", path, e))?;
    let file = tmp
        .persist(path)
        .map_err(|e| StoreError::io("rename into", path, e.error))?;
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(|e| StoreError::io("chmod", path, e))?;
    Ok(())
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io("read dir", dir, e)),
    };
    for item in rd {
        let item = item.map_err(|e| StoreError::io("read dir", dir, e))?;
        if let Ok(name) = item.file_name().into_string() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Every cache record file under `records/`, parsed; unreadable files are skipped (a stale or
/// foreign file is never worth failing a prune for).
fn cache_records(records: &Path) -> Result<Vec<(PathBuf, CacheRecord)>> {
    let mut out = Vec::new();
    for shard in sorted_names(records)? {
        let dir = records.join(shard);
        if !dir.is_dir() {
            continue;
        }
        for name in sorted_names(&dir)? {
            let path = dir.join(name);
            let Ok(bytes) = fs::read(&path) else { continue };
            if let Ok(record) = serde_json::from_slice::<CacheRecord>(&bytes) {
                out.push((path, record));
            }
        }
    }
    Ok(out)
}

fn count_files(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for shard in sorted_names(dir)? {
        let sub = dir.join(shard);
        if sub.is_dir() {
            n += sorted_names(&sub)?.len() as u64;
        }
    }
    Ok(n)
}

fn file_size(path: &Path) -> u64 {
    fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes of regular files below `path` (symlinks not followed).
fn dir_size(path: &Path) -> Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("lstat", path, e)),
    };
    if !meta.is_dir() {
        return Ok(if meta.is_file() { meta.len() } else { 0 });
    }
    let mut total = 0;
    for name in sorted_names(path)? {
        total += dir_size(&path.join(name))?;
    }
    Ok(total)
}

/// Remove a tree, making read-only directories writable first (snapshots hold such trees).
pub(crate) fn remove_dir_if_present(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path);
            match fs::remove_dir_all(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::io("remove", path, e)),
            }
        }
    }
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
    if let Ok(rd) = fs::read_dir(path) {
        for item in rd.flatten() {
            make_writable(&item.path());
        }
    }
}

/// A map from the names of a store's images to their manifest digests (for tests and tools).
pub fn name_map(store: &Store) -> Result<BTreeMap<String, Digest>> {
    Ok(store
        .images()?
        .into_iter()
        .map(|s| (format!("{}:{}", s.name, s.tag), s.digest))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_layers::image::{write_image, ImageConfig};

    fn image(store: &Store, label: &str) -> StoredImage {
        let mut config = ImageConfig::new("linux", "amd64");
        config
            .config
            .labels
            .insert("l".to_string(), label.to_string());
        write_image(store.blobs(), &config, &[], &BTreeMap::new()).expect("write image")
    }

    #[test]
    fn names_with_the_same_tag_live_side_by_side() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = image(&store, "a");
        let b = image(&store, "b");
        store
            .put_name(&parse_name("app:v1").expect("name"), &a)
            .expect("put");
        store
            .put_name(&parse_name("web:v1").expect("name"), &b)
            .expect("put");
        let names = name_map(&store).expect("names");
        assert_eq!(names.len(), 2);
        assert_eq!(names["app:v1"], a.manifest_digest);
        assert_eq!(names["web:v1"], b.manifest_digest);
        // Re-tagging replaces by full name.
        store
            .put_name(&parse_name("app:v1").expect("name"), &b)
            .expect("put");
        assert_eq!(
            name_map(&store).expect("names")["app:v1"],
            b.manifest_digest
        );
    }

    #[test]
    fn resolve_by_name_digest_and_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = image(&store, "a");
        store
            .put_name(&parse_name("app").expect("name"), &a)
            .expect("put");
        let hex = a.manifest_digest.hex().to_string();
        let config_hex = a.config_digest.hex().to_string();
        let cases = [
            ("app".to_string(), true),
            ("app:latest".to_string(), true),
            ("docker.io/library/app:latest".to_string(), true),
            (a.manifest_digest.to_string(), true),
            (hex[..12].to_string(), true),
            (config_hex[..12].to_string(), true),
            ("other".to_string(), false),
        ];
        for (name, ok) in cases {
            let got = store.resolve(&name);
            assert_eq!(got.is_ok(), ok, "{name}");
            if let Ok(img) = got {
                assert_eq!(img.manifest_digest, a.manifest_digest, "{name}");
            }
        }
    }

    #[test]
    fn tag_rmi_and_prune() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = image(&store, "a");
        store
            .put_name(&parse_name("app:v1").expect("name"), &a)
            .expect("put");
        store.tag("app:v1", "app:v2").expect("tag");
        assert_eq!(store.images().expect("images").len(), 2);
        let removed = store.rmi("app:v1").expect("rmi");
        assert_eq!(removed.len(), 1);
        assert_eq!(store.images().expect("images").len(), 1);
        assert!(store.rmi("nope:v1").is_err());
        let report = store.prune(false).expect("prune");
        assert_eq!(report.blobs, 0, "the tagged image keeps its blobs");
        store
            .rmi(&a.manifest_digest.to_string())
            .expect("rmi by digest");
        let report = store.prune(true).expect("prune all");
        assert_eq!(report.blobs, 2, "manifest and config are gone");
        assert!(!store.blobs().has(&a.manifest_digest));
    }
}
