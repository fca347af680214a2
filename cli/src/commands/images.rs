//! `rbuild images`: the named images in the local store, as `docker images` lists them
//! (repository, tag, short digest, created, size), or as JSON with full digests.

use std::io::Write;

pub use rbuild::events::human_size;
use rbuild::store::{ImageSummary, Store};
use serde_json::json;

use crate::args::{Format, ImagesArgs};
use crate::report::CliError;

/// Run `rbuild images`.
pub fn run(store: &Store, args: &ImagesArgs) -> Result<(), CliError> {
    let images = store.images()?;
    let text = match args.format {
        Format::Text => render_text(&images),
        Format::Json => {
            let list: Vec<serde_json::Value> = images
                .iter()
                .map(|i| {
                    json!({
                        "name": i.name,
                        "tag": i.tag,
                        "digest": i.digest.to_string(),
                        "config": i.config_digest.to_string(),
                        "size": i.size,
                        "created": i.created,
                    })
                })
                .collect();
            let mut s =
                serde_json::to_string_pretty(&list).map_err(|e| CliError::Output(e.to_string()))?;
            s.push('\n');
            s
        }
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| CliError::Output(e.to_string()))
}

fn render_text(images: &[ImageSummary]) -> String {
    let mut rows = vec![[
        "REPOSITORY".to_string(),
        "TAG".to_string(),
        "DIGEST".to_string(),
        "CREATED".to_string(),
        "SIZE".to_string(),
    ]];
    for i in images {
        rows.push([
            i.name.clone(),
            i.tag.clone(),
            short_digest(&i.digest.to_string()),
            i.created.clone().unwrap_or_else(|| "-".to_string()),
            human_size(i.size),
        ]);
    }
    table(&rows)
}

/// `sha256:` and the first 12 hex digits, as Docker shows image IDs.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// Left-aligned columns separated by three spaces; trailing spaces trimmed.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let rows = [
            ["A".to_string(), "B".to_string()],
            ["long".to_string(), "x".to_string()],
        ];
        assert_eq!(table(&rows), "A      B\nlong   x\n");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
    }
}
