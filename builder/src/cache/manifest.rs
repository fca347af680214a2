//! Key manifests: the labelled inputs that made a cache key, stored beside each cache record so
//! that `rbuild why` can say why a step missed the cache.
//!
//! A [`KeyManifest`] is the single source of a key: [`KeyManifest::key`] hashes its fields, so a
//! stored manifest always explains exactly the key it sits under. [`explain`] compares two
//! manifests field by field (by label, in the new manifest's order) and returns [`MissReason`]s,
//! in the spirit of cargo's `DirtyReason`. Labels are stable names chosen by `cache::key`
//! (`copy.dest`, `run.mount[0].target`, `var.VERSION`); values are short text or digests, never
//! host paths or clocks.

use std::collections::BTreeMap;
use std::fmt;

use rbuild_layers::digest::{Digest, Hasher};
use serde::{Deserialize, Serialize};

use super::key::CacheKey;

/// The version of the key scheme; bump it when the field encoding or any label changes meaning.
pub const KEY_VERSION: u32 = 2;

/// Texts longer than this are recorded by digest (with a preview) instead of verbatim.
pub const MAX_INLINE_TEXT: usize = 1024;

/// The value of one key field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum FieldValue {
    /// The field does not apply (an unset option); distinct from an empty text.
    Absent,
    /// A short text, verbatim.
    Text(String),
    /// A content digest or another key.
    Digest(Digest),
    /// A long text, recorded by its digest and a preview of its start.
    LongText {
        /// sha256 of the text.
        digest: Digest,
        /// Length in bytes.
        len: u64,
        /// The first characters, for humans.
        preview: String,
    },
}

impl FieldValue {
    /// A text value, switching to [`FieldValue::LongText`] above [`MAX_INLINE_TEXT`] bytes.
    pub fn text(s: &str) -> Self {
        if s.len() <= MAX_INLINE_TEXT {
            return FieldValue::Text(s.to_string());
        }
        let preview: String = s.chars().take(64).collect();
        FieldValue::LongText {
            digest: Digest::of(s.as_bytes()),
            len: s.len() as u64,
            preview,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            FieldValue::Absent => 0,
            FieldValue::Text(_) => 1,
            FieldValue::Digest(_) => 2,
            FieldValue::LongText { .. } => 3,
        }
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Absent => f.write_str("(unset)"),
            FieldValue::Text(s) => write!(f, "{s:?}"),
            FieldValue::Digest(d) => write!(f, "{d}"),
            FieldValue::LongText {
                digest,
                len,
                preview,
            } => write!(f, "{preview:?}… ({len} bytes, {digest})"),
        }
    }
}

/// One labelled input of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyField {
    /// Stable label, e.g. `copy.dest`.
    pub label: String,
    /// The value.
    pub value: FieldValue,
}

/// The ordered, labelled inputs of one cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyManifest {
    /// Key scheme version ([`KEY_VERSION`] when built by this crate).
    pub version: u32,
    /// Fields in hashing order.
    pub fields: Vec<KeyField>,
}

impl KeyManifest {
    /// An empty manifest at the current version.
    pub fn new() -> Self {
        KeyManifest {
            version: KEY_VERSION,
            fields: Vec::new(),
        }
    }

    /// The key these fields hash to.
    ///
    /// Encoding: `"rbuild-cache-key\0"`, version (u32 BE), field count (u64 BE), then per field
    /// the label length (u64 BE) and bytes, a one-byte value tag, and the value length (u64 BE)
    /// and bytes (digests as their `sha256:…` text; long texts as digest text then length).
    /// Every variable-length part is length-prefixed, so no two field lists collide.
    pub fn key(&self) -> CacheKey {
        let mut h = Hasher::new();
        h.update(b"rbuild-cache-key\0");
        h.update(&self.version.to_be_bytes());
        h.update(&(self.fields.len() as u64).to_be_bytes());
        for f in &self.fields {
            put(&mut h, f.label.as_bytes());
            h.update(&[f.value.tag()]);
            match &f.value {
                FieldValue::Absent => put(&mut h, b""),
                FieldValue::Text(s) => put(&mut h, s.as_bytes()),
                FieldValue::Digest(d) => put(&mut h, d.to_string().as_bytes()),
                FieldValue::LongText { digest, len, .. } => {
                    let mut v = digest.to_string().into_bytes();
                    v.extend_from_slice(&len.to_be_bytes());
                    put(&mut h, &v);
                }
            }
        }
        CacheKey::from_digest(h.finish().0)
    }

    /// The value of the first field with this label.
    pub fn get(&self, label: &str) -> Option<&FieldValue> {
        self.fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| &f.value)
    }
}

impl Default for KeyManifest {
    fn default() -> Self {
        Self::new()
    }
}

fn put(h: &mut Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// One reason a new key differs from an old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// The key scheme itself changed (a new rbuild); every key differs.
    VersionChanged {
        /// Old version.
        old: u32,
        /// New version.
        new: u32,
    },
    /// A field has a different value.
    Changed {
        /// The field.
        label: String,
        /// Its old value.
        old: FieldValue,
        /// Its new value.
        new: FieldValue,
    },
    /// A field exists only in the new manifest.
    Added {
        /// The field.
        label: String,
        /// Its value.
        value: FieldValue,
    },
    /// A field exists only in the old manifest.
    Removed {
        /// The field.
        label: String,
        /// Its old value.
        value: FieldValue,
    },
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::VersionChanged { old, new } => {
                write!(f, "cache key scheme changed from v{old} to v{new}")
            }
            MissReason::Changed { label, old, new } => {
                write!(f, "{label} changed from {old} to {new}")
            }
            MissReason::Added { label, value } => write!(f, "{label} is new: {value}"),
            MissReason::Removed { label, value } => write!(f, "{label} was removed (was {value})"),
        }
    }
}

/// Why `new` does not hash like `old`: an empty list means the manifests are equal.
///
/// Fields are matched by label; a label that occurs several times is matched occurrence by
/// occurrence. Reasons come in the new manifest's order, followed by removed fields.
pub fn explain(old: &KeyManifest, new: &KeyManifest) -> Vec<MissReason> {
    let mut reasons = Vec::new();
    if old.version != new.version {
        reasons.push(MissReason::VersionChanged {
            old: old.version,
            new: new.version,
        });
    }
    let mut old_by_label: BTreeMap<&str, Vec<&FieldValue>> = BTreeMap::new();
    for f in &old.fields {
        old_by_label.entry(&f.label).or_default().push(&f.value);
    }
    let mut used: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &new.fields {
        let n = used.entry(&f.label).or_insert(0);
        let old_value = old_by_label.get(f.label.as_str()).and_then(|v| v.get(*n));
        *n += 1;
        match old_value {
            None => reasons.push(MissReason::Added {
                label: f.label.clone(),
                value: f.value.clone(),
            }),
            Some(v) if **v != f.value => reasons.push(MissReason::Changed {
                label: f.label.clone(),
                old: (*v).clone(),
                new: f.value.clone(),
            }),
            Some(_) => {}
        }
    }
    let mut seen_old: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &old.fields {
        let index = seen_old.entry(&f.label).or_insert(0);
        let in_new = used.get(f.label.as_str()).copied().unwrap_or(0);
        if *index >= in_new {
            reasons.push(MissReason::Removed {
                label: f.label.clone(),
                value: f.value.clone(),
            });
        }
        *index += 1;
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(fields: &[(&str, &str)]) -> KeyManifest {
        KeyManifest {
            version: KEY_VERSION,
            fields: fields
                .iter()
                .map(|(l, v)| KeyField {
                    label: l.to_string(),
                    value: FieldValue::text(v),
                })
                .collect(),
        }
    }

    #[test]
    fn explain_table() {
        let t = |s: &str| FieldValue::text(s);
        let cases: Vec<(&str, KeyManifest, KeyManifest, Vec<MissReason>)> = vec![
            ("equal", m(&[("a", "1")]), m(&[("a", "1")]), vec![]),
            (
                "changed",
                m(&[("a", "1"), ("b", "2")]),
                m(&[("a", "1"), ("b", "3")]),
                vec![MissReason::Changed {
                    label: "b".into(),
                    old: t("2"),
                    new: t("3"),
                }],
            ),
            (
                "added",
                m(&[("a", "1")]),
                m(&[("a", "1"), ("c", "x")]),
                vec![MissReason::Added {
                    label: "c".into(),
                    value: t("x"),
                }],
            ),
            (
                "removed",
                m(&[("a", "1"), ("c", "x")]),
                m(&[("a", "1")]),
                vec![MissReason::Removed {
                    label: "c".into(),
                    value: t("x"),
                }],
            ),
            (
                "repeated label removed reports the later occurrence",
                m(&[("s", "a"), ("s", "b")]),
                m(&[("s", "a")]),
                vec![MissReason::Removed {
                    label: "s".into(),
                    value: t("b"),
                }],
            ),
            (
                "repeated labels pair by occurrence",
                m(&[("s", "a"), ("s", "b")]),
                m(&[("s", "a"), ("s", "c"), ("s", "d")]),
                vec![
                    MissReason::Changed {
                        label: "s".into(),
                        old: t("b"),
                        new: t("c"),
                    },
                    MissReason::Added {
                        label: "s".into(),
                        value: t("d"),
                    },
                ],
            ),
            (
                "version",
                KeyManifest {
                    version: 0,
                    fields: vec![],
                },
                KeyManifest::new(),
                vec![MissReason::VersionChanged {
                    old: 0,
                    new: KEY_VERSION,
                }],
            ),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(explain(&old, &new), want, "{name}");
        }
    }

    #[test]
    fn key_depends_on_every_part() {
        let base = m(&[("a", "1"), ("b", "2")]);
        let variants = [
            ("label", m(&[("a", "1"), ("c", "2")])),
            ("value", m(&[("a", "1"), ("b", "3")])),
            ("order", m(&[("b", "2"), ("a", "1")])),
            ("boundary", m(&[("a", "12"), ("b", "")])),
            ("extra field", m(&[("a", "1"), ("b", "2"), ("c", "")])),
            (
                "version",
                KeyManifest {
                    version: KEY_VERSION + 1,
                    ..base.clone()
                },
            ),
        ];
        for (name, v) in variants {
            assert_ne!(v.key(), base.key(), "{name}");
        }
        let absent = KeyManifest {
            version: KEY_VERSION,
            fields: vec![KeyField {
                label: "b".into(),
                value: FieldValue::Absent,
            }],
        };
        assert_ne!(
            absent.key(),
            m(&[("b", "")]).key(),
            "absent differs from empty"
        );
        assert_eq!(
            base.key(),
            m(&[("a", "1"), ("b", "2")]).key(),
            "deterministic"
        );
    }

    #[test]
    fn long_text_is_recorded_by_digest() {
        let long = "x".repeat(MAX_INLINE_TEXT + 1);
        match FieldValue::text(&long) {
            FieldValue::LongText {
                len,
                preview,
                digest,
            } => {
                assert_eq!(len, long.len() as u64);
                assert_eq!(preview.len(), 64);
                assert_eq!(digest, Digest::of(long.as_bytes()));
            }
            other => panic!("expected long text, got {other:?}"),
        }
        assert_eq!(FieldValue::text("short"), FieldValue::Text("short".into()));
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let mut man = m(&[("a", "1")]);
        man.fields.push(KeyField {
            label: "d".into(),
            value: FieldValue::Digest(Digest::of(b"x")),
        });
        man.fields.push(KeyField {
            label: "n".into(),
            value: FieldValue::Absent,
        });
        let text = serde_json::to_string(&man).expect("serializes");
        let back: KeyManifest = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, man);
        assert_eq!(back.key(), man.key());
    }
}
