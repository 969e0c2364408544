//! mdBook preprocessor (`[preprocessor.listings]` in `book/book.toml`): labels every included code
//! block with its file and dedents anchored includes — see `book_check::listings`.
//!
//! mdBook calls `book-listings supports <renderer>` (every renderer is fine) and then passes
//! `[context, book]` as JSON on stdin, expecting the book back on stdout. The book is walked as
//! plain JSON, so a new field in a later mdBook passes through untouched.

use anyhow::Context as _;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("supports") {
        return Ok(());
    }
    let input: Value = serde_json::from_reader(std::io::stdin().lock()).context("reading mdBook's JSON")?;
    let [context, mut book]: [Value; 2] =
        serde_json::from_value(input).context("expected [context, book]")?;
    let root = PathBuf::from(context["root"].as_str().context("context.root")?);
    let src = root.join(context["config"]["book"]["src"].as_str().unwrap_or("src"));
    // Labels are shown from the folder holding the book (the repository root for book/).
    let label_root = root.parent().unwrap_or(&root).to_path_buf();
    let mut errors = Vec::new();
    walk(&mut book, &src, &label_root, &mut errors);
    anyhow::ensure!(errors.is_empty(), "book-listings:\n{}", errors.join("\n"));
    serde_json::to_writer(std::io::stdout().lock(), &book)?;
    Ok(())
}

/// Rewrites the `content` of every chapter object (one that has `content` and `source_path`).
fn walk(value: &mut Value, src: &Path, label_root: &Path, errors: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let source = map.get("source_path").and_then(Value::as_str).map(PathBuf::from);
            if let (Some(source), Some(Value::String(content))) = (source, map.get_mut("content")) {
                let dir =
                    src.join(&source).parent().map(Path::to_path_buf).unwrap_or_else(|| src.to_path_buf());
                match book_check::listings::expand(content, &dir, label_root) {
                    Ok(expanded) => *content = expanded,
                    Err(e) => errors.push(format!("{}: {e}", source.display())),
                }
            }
            for v in map.values_mut() {
                walk(v, src, label_root, errors);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, src, label_root, errors)),
        _ => {}
    }
}
