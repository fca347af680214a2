//! `rbuild history NAME`: one row per history entry of the image config, newest first, as
//! `docker history` shows it: when, the instruction (`CREATED BY`), the size of the layer the
//! step made (compressed, as stored; `0B` for steps without a layer) and the comment.

use std::io::Write;

use rbuild::store::Store;
use rbuild_layers::image::History;

use crate::args::NameArgs;
use crate::commands::images::{human_size, table};
use crate::report::CliError;

/// Run `rbuild history`.
pub fn run(store: &Store, args: &NameArgs) -> Result<(), CliError> {
    let image = store.resolve(&args.name)?;
    let sizes: Vec<u64> = image.manifest.layers().iter().map(|l| l.size()).collect();
    let text = render(&image.config.history, &sizes);
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| CliError::Output(e.to_string()))
}

/// The table: history entries newest first; the n-th non-empty entry owns the n-th layer.
fn render(history: &[History], layer_sizes: &[u64]) -> String {
    let mut layer = 0;
    let mut rows: Vec<[String; 4]> = Vec::new();
    for h in history {
        let size = if h.empty_layer {
            0
        } else {
            let s = layer_sizes.get(layer).copied().unwrap_or(0);
            layer += 1;
            s
        };
        rows.push([
            h.created.clone().unwrap_or_else(|| "-".into()),
            h.created_by.clone().unwrap_or_default(),
            human_size(size),
            h.comment.clone().unwrap_or_default(),
        ]);
    }
    rows.reverse();
    rows.insert(
        0,
        [
            "CREATED".to_string(),
            "CREATED BY".to_string(),
            "SIZE".to_string(),
            "COMMENT".to_string(),
        ],
    );
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_go_to_non_empty_entries_newest_first() {
        let h = |by: &str, empty: bool| History {
            created: Some("1970-01-01T00:00:00Z".into()),
            created_by: Some(by.into()),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: empty,
            ..Default::default()
        };
        let text = render(
            &[h("base", false), h("ENV A=1", true), h("COPY a /", false)],
            &[2000, 300],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("CREATED"), "{text}");
        assert!(
            lines[1].contains("COPY a /") && lines[1].contains("300B"),
            "{text}"
        );
        assert!(
            lines[2].contains("ENV A=1") && lines[2].contains(" 0B"),
            "{text}"
        );
        assert!(
            lines[3].contains("base") && lines[3].contains("2kB"),
            "{text}"
        );
    }
}
