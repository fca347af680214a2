//! PAX extended header records (POSIX.1-2001 `pax` format): the body of an `x` (per entry) or `g`
//! (global) tar member is a sequence of records `"<len> <key>=<value>\n"`, where `<len>` is the
//! decimal length of the whole record, its own digits and the final newline included.
//!
//! Records are split by that length prefix, never at newlines: a value is raw bytes and may hold
//! `\n`, `=` or NUL (binary `SCHILY.xattr.security.capability` values do), exactly as Go's
//! `archive/tar` (`parsePAXRecord`), which BuildKit and containerd use, reads them. Keys must be
//! UTF-8, non-empty and free of `=` and NUL; `path`, `linkpath`, `uname` and `gname` values may not
//! contain NUL. Anything else is a [`PaxError`] carrying the byte offset of the bad record.

use std::collections::BTreeMap;

/// One parsed record: the key and its raw value bytes.
pub type PaxRecord = (String, Vec<u8>);

/// Why a PAX header body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pax record at byte {offset}: {detail}")]
pub struct PaxError {
    /// Offset of the offending record within the header body.
    pub offset: usize,
    /// What is wrong with it, including the offending text (lossily decoded, shortened).
    pub detail: String,
}

/// Parse a whole PAX header body into its records, in order (a later duplicate key is kept as a
/// separate record; callers let the last one win, as Go does).
///
/// Trailing NUL padding after the last record is tolerated, as Go's reader tolerates it.
pub fn parse_records(data: &[u8]) -> Result<Vec<PaxRecord>, PaxError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let rest = &data[offset..];
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let (record, len) = parse_record(rest).map_err(|detail| PaxError { offset, detail })?;
        out.push(record);
        offset += len;
    }
    Ok(out)
}

/// Parse the first record of `data`: the record and its total length in bytes.
fn parse_record(data: &[u8]) -> Result<(PaxRecord, usize), String> {
    let space = data
        .iter()
        .take(24)
        .position(|b| *b == b' ')
        .ok_or_else(|| format!("no length prefix in {}", shown(data)))?;
    let digits = &data[..space];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!("length prefix {} is not a number", shown(digits)));
    }
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("length prefix {} is out of range", shown(digits)))?;
    // The shortest record is "5 k=\n"-like: digits, space, one key byte, `=`, newline.
    if len < space + 4 {
        return Err(format!("length {len} is shorter than the record header"));
    }
    if len > data.len() {
        return Err(format!(
            "length {len} runs past the end of the header ({} bytes left)",
            data.len()
        ));
    }
    if data[len - 1] != b'\n' {
        return Err(format!(
            "record of length {len} does not end in a newline: {}",
            shown(&data[..len])
        ));
    }
    let body = &data[space + 1..len - 1];
    let eq = body
        .iter()
        .position(|b| *b == b'=')
        .ok_or_else(|| format!("record {} has no `=`", shown(body)))?;
    let (key, value) = (&body[..eq], &body[eq + 1..]);
    if key.is_empty() {
        return Err(format!("record {} has an empty key", shown(body)));
    }
    let key =
        std::str::from_utf8(key).map_err(|_| format!("key {} is not valid utf-8", shown(key)))?;
    if key.contains('\0') {
        return Err(format!("key {key:?} contains a nul byte"));
    }
    if matches!(key, "path" | "linkpath" | "uname" | "gname") && value.contains(&0) {
        return Err(format!("value of {key} contains a nul byte"));
    }
    Ok(((key.to_string(), value.to_vec()), len))
}

/// Encode records as `"<len> <key>=<value>\n"` in key order (the order Go's `archive/tar` writes).
pub fn encode_records(records: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let base = key.len() + value.len() + 3;
        let mut len = base + base.to_string().len();
        if len.to_string().len() > base.to_string().len() {
            len = base + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// Bytes for an error message: lossily decoded, at most 64 bytes, quoted.
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(64)];
    let more = if bytes.len() > cut.len() { "…" } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(k: &str, v: &[u8]) -> PaxRecord {
        (k.to_string(), v.to_vec())
    }

    #[test]
    fn encoded_lengths_count_themselves() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("path", b"a", "9 path=a\n"),
            ("path", &[b'x'; 93], ""),
            ("path", &[b'x'; 94], ""),
            ("mtime", b"-1", "12 mtime=-1\n"),
        ];
        for (key, value, want) in cases {
            let mut records = BTreeMap::new();
            records.insert(key.to_string(), value.to_vec());
            let got = encode_records(&records);
            let (len, _) = std::str::from_utf8(&got)
                .expect("ascii")
                .split_once(' ')
                .expect("space");
            assert_eq!(len.parse::<usize>().expect("number"), got.len(), "{key}");
            if !want.is_empty() {
                assert_eq!(got, want.as_bytes());
            }
        }
    }

    #[test]
    fn parse_table() {
        let cases: Vec<(&[u8], Vec<PaxRecord>)> = vec![
            (b"", vec![]),
            (b"9 path=a\n", vec![rec("path", b"a")]),
            (
                b"12 mtime=-1\n9 path=a\n",
                vec![rec("mtime", b"-1"), rec("path", b"a")],
            ),
            // An embedded newline does not end the record.
            (
                b"22 SCHILY.xattr.k=a\nb\n",
                vec![rec("SCHILY.xattr.k", b"a\nb")],
            ),
            // A value that is exactly a newline, then a path record.
            (
                b"20 SCHILY.xattr.k=\n\n12 path=abc\n",
                vec![rec("SCHILY.xattr.k", b"\n"), rec("path", b"abc")],
            ),
            // `=` inside a value: only the first one separates.
            (b"11 k=a=b=c\n", vec![rec("k", b"a=b=c")]),
            (b"5 k=\n", vec![rec("k", b"")]),
            // NUL padding after the last record.
            (b"9 path=a\n\0\0\0", vec![rec("path", b"a")]),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_records(input),
                Ok(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn malformed_records_are_errors_with_offsets() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"99 path=a\n", 0, "runs past the end"),
            (b"8 path=a\n", 0, "does not end in a newline"),
            (b"9 path=a\n7 path=a\n", 9, "does not end in a newline"),
            (b"11 path=a\n", 0, "runs past the end"),
            (b"x path=a\n", 0, "not a number"),
            (b"-9 path=a\n", 0, "not a number"),
            (b"9path=a\n", 0, "no length prefix"),
            (b"9 patha\n\n", 0, "no `=`"),
            (b"6 =ab\n", 0, "empty key"),
            (b"3 a\n", 0, "shorter than the record header"),
            (b"0 \n", 0, "shorter than the record header"),
            (b"12 path=a\0b\n", 0, "nul byte"),
            (b"12 k\xff=value\n", 0, "not valid utf-8"),
            (b"99999999999999999999999 k=v\n", 0, "out of range"),
        ];
        for (input, offset, needle) in cases {
            let err = parse_records(input).expect_err("malformed");
            assert_eq!(err.offset, *offset, "{err}");
            assert!(
                err.to_string().contains(needle),
                "{err} should say {needle}"
            );
        }
    }

    proptest! {
        #[test]
        fn records_round_trip(
            records in proptest::collection::btree_map(
                "[a-zA-Z0-9._]{1,20}",
                proptest::collection::vec(any::<u8>(), 0..300),
                0..6,
            )
        ) {
            let encoded = encode_records(&records);
            let parsed = parse_records(&encoded).expect("parses");
            let back: BTreeMap<String, Vec<u8>> = parsed.into_iter().collect();
            prop_assert_eq!(back, records);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_records(&data);
        }
    }
}
