//! Content addresses. A [`Digest`] names a blob by the sha256 of its bytes as stored (compressed);
//! a [`DiffId`] names a layer by the sha256 of its uncompressed tar. They are distinct types so one
//! is never written where the other belongs.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// The algorithm prefix every digest we produce or accept carries.
pub const SHA256: &str = "sha256";

/// A validated `sha256:<64 lowercase hex>` content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// Why a string is not a digest we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// The algorithm is not sha256.
    #[error("unsupported digest algorithm `{0}` (only sha256 is supported)")]
    UnsupportedAlgorithm(String),
    /// The string has no `algo:` prefix or the hex part is malformed.
    #[error("malformed digest `{0}`: expected sha256:<64 lowercase hex digits>")]
    Malformed(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(bytes).into())
    }

    /// A digest from a finished sha256 state.
    pub fn from_sha256(hash: [u8; 32]) -> Self {
        Digest {
            hex: hex::encode(hash),
        }
    }

    /// The 64 hex digits without the algorithm prefix (the blob's file name in a layout).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        SHA256
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algo, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestParseError::Malformed(s.to_string()))?;
        if algo != SHA256 {
            return Err(DigestParseError::UnsupportedAlgorithm(algo.to_string()));
        }
        let valid = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(DigestParseError::Malformed(s.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256}:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The digest of a layer's uncompressed tar stream (the image config's `rootfs.diff_ids`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DiffId(pub Digest);

impl fmt::Display for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiffId({})", self.0)
    }
}

impl FromStr for DiffId {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(DiffId)
    }
}

/// A streaming sha256 that also counts bytes: `write` into it, then `finish`.
#[derive(Clone, Default)]
pub struct Hasher {
    state: Sha256,
    len: u64,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.state.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest and byte count of everything fed.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_sha256(self.state.finalize().into()), self.len)
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_is_well_known() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let d = Digest::of(b"x");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!(matches!(
            "md5:00".parse::<Digest>(),
            Err(DigestParseError::UnsupportedAlgorithm(_))
        ));
        assert!("sha256:ABC".parse::<Digest>().is_err());
        assert!("nocolon".parse::<Digest>().is_err());
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(upper.parse::<Digest>().is_err());
    }

    #[test]
    fn hasher_matches_one_shot() {
        let mut h = Hasher::new();
        h.update(b"hello ");
        h.update(b"world");
        let (d, n) = h.finish();
        assert_eq!(d, Digest::of(b"hello world"));
        assert_eq!(n, 11);
    }
}
