//! Listings: every code block that includes a file is labelled with that file's path, and an
//! anchored include loses the indentation it had in its file.
//!
//! mdBook inserts an anchored piece as it stands in the source, so a method anchored inside an
//! `impl` keeps four spaces on every line, and nothing tells the reader which file a block comes
//! from. This preprocessor runs before mdBook's own `links` preprocessor: for each fenced block
//! holding `{{#include PATH:ANCHOR}}` it inserts the anchored lines itself, dedented, and puts
//! `<div class="listing-file">PATH</div>` above the fence (PATH from the repository root, which is
//! the folder holding the book). Whole-file and line-range includes are left to mdBook and only
//! get the label. A missing file or anchor fails the build instead of rendering nothing.

use std::path::{Component, Path, PathBuf};

/// The CSS class of the label above an included block (styled in `book/theme/cruncan.css`).
pub const LABEL_CLASS: &str = "listing-file";

/// Rewrites one chapter. `chapter_dir` is the folder the chapter's include paths are relative
/// to; `label_root` is the folder label paths are shown relative to.
pub fn expand(content: &str, chapter_dir: &Path, label_root: &Path) -> Result<String, String> {
    let mut out = String::with_capacity(content.len());
    let mut lines = content.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let Some(fence) = fence_open(line) else {
            out.push_str(line);
            continue;
        };
        let mut body = Vec::new();
        let mut close = None;
        for inner in lines.by_ref() {
            if fence.closes(inner) {
                close = Some(inner);
                break;
            }
            body.push(inner);
        }
        let includes: Vec<&str> = body.iter().filter_map(|l| directive(l)).collect();
        if let Some(first) = includes.first() {
            let (path, _) = split_selector(first);
            let label = label_for(&chapter_dir.join(path), label_root);
            out.push_str(&format!("{}<div class=\"{LABEL_CLASS}\">{label}</div>\n\n", fence.indent));
        }
        out.push_str(line);
        for inner in body {
            match directive(inner) {
                Some(include) => out.push_str(&expand_include(include, chapter_dir, &fence.indent, inner)?),
                None => out.push_str(inner),
            }
        }
        if let Some(close) = close {
            out.push_str(close);
        }
    }
    Ok(out)
}

struct Fence {
    indent: String,
    marker: char,
    len: usize,
}

impl Fence {
    fn closes(&self, line: &str) -> bool {
        let t = line.trim();
        t.len() >= self.len && t.chars().all(|c| c == self.marker)
    }
}

fn fence_open(line: &str) -> Option<Fence> {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = trimmed.chars().take_while(|c| *c == marker).count();
    (len >= 3 && indent.len() < 8).then(|| Fence { indent: indent.to_owned(), marker, len })
}

/// The argument of a line that is exactly one `{{#include ...}}`.
fn directive(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix("{{#include ")?.strip_suffix("}}").map(str::trim)
}

fn split_selector(include: &str) -> (&str, Option<&str>) {
    match include.split_once(':') {
        Some((p, s)) => (p, Some(s)),
        None => (include, None),
    }
}

fn is_line_range(selector: &str) -> bool {
    selector.split(':').all(|part| part.chars().all(|c| c.is_ascii_digit()))
}

/// The anchored lines of `include`, dedented and indented like the fence; other includes are
/// returned unchanged for mdBook.
fn expand_include(include: &str, chapter_dir: &Path, indent: &str, original: &str) -> Result<String, String> {
    let (path, selector) = split_selector(include);
    let Some(anchor) = selector.filter(|s| !is_line_range(s)) else {
        return Ok(original.to_owned());
    };
    let file = chapter_dir.join(path);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let lines = anchored(&text, anchor)
        .ok_or_else(|| format!("anchor `{anchor}` not found in {}", file.display()))?;
    if lines.iter().all(|l| l.trim().is_empty()) {
        return Err(format!("anchor `{anchor}` is empty in {}", file.display()));
    }
    let mut out = String::new();
    for l in dedent(&lines) {
        if !l.is_empty() {
            out.push_str(indent);
        }
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}

/// The name after `marker` (`ANCHOR:` or `ANCHOR_END:`) on `line`, as mdBook reads it.
fn marker_name<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let at = line.find(marker)?;
    let rest = line[at + marker.len()..].trim_start();
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name`, without any anchor marker lines.
fn anchored<'a>(text: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let mut lines = text.lines();
    lines.by_ref().find(|l| marker_name(l, "ANCHOR:") == Some(name))?;
    let mut body = Vec::new();
    for l in lines {
        if marker_name(l, "ANCHOR_END:") == Some(name) {
            return Some(body);
        }
        if marker_name(l, "ANCHOR:").is_none() && marker_name(l, "ANCHOR_END:").is_none() {
            body.push(l);
        }
    }
    None
}

/// Removes the indentation every non-blank line shares; blank lines become empty.
fn dedent(lines: &[&str]) -> Vec<String> {
    let common = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| if l.trim().is_empty() { String::new() } else { l[common..].trim_end().to_owned() })
        .collect()
}

/// `file` relative to `root`, with `..` and `.` resolved lexically and `/` separators.
fn label_for(file: &Path, root: &Path) -> String {
    let clean = normalize(file);
    let root = normalize(root);
    let shown = clean.strip_prefix(&root).unwrap_or(&clean);
    shown.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("book/src/ch")).unwrap();
        std::fs::create_dir_all(dir.path().join("code")).unwrap();
        std::fs::write(
            dir.path().join("code/x.rs"),
            "impl X {\n    // ANCHOR: method\n    fn m() {\n        // ANCHOR: inner\n        1\n        \
             // ANCHOR_END: inner\n    }\n    // ANCHOR_END: method\n    // ANCHOR: empty\n    // ANCHOR_END: empty\n}\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn anchored_blocks_are_dedented_labelled_and_lose_inner_markers() {
        let dir = repo();
        let chapter = "Text\n\n```rust\n{{#include ../../../code/x.rs:method}}\n```\nafter\n";
        let out = expand(chapter, &dir.path().join("book/src/ch"), dir.path()).unwrap();
        assert_eq!(
            out,
            "Text\n\n<div class=\"listing-file\">code/x.rs</div>\n\n```rust\nfn m() {\n    1\n}\n```\nafter\n"
        );
    }

    #[test]
    fn whole_files_and_line_ranges_are_left_to_mdbook_but_labelled() {
        let dir = repo();
        let chapter = "  ```sql\n  {{#include ../../../code/x.rs}}\n  ```\n```\n{{#include ../../../code/x.rs:2:3}}\n```\n";
        let out = expand(chapter, &dir.path().join("book/src/ch"), dir.path()).unwrap();
        assert_eq!(
            out,
            "  <div class=\"listing-file\">code/x.rs</div>\n\n  ```sql\n  {{#include ../../../code/x.rs}}\n  ```\n\
             <div class=\"listing-file\">code/x.rs</div>\n\n```\n{{#include ../../../code/x.rs:2:3}}\n```\n"
        );
    }

    #[test]
    fn blocks_without_include_and_text_includes_are_untouched() {
        let dir = repo();
        let chapter = "```bash\nmake up\n```\n\n{{#include ../../../code/x.rs}}\n````md\n```\nx\n```\n````\n";
        let out = expand(chapter, &dir.path().join("book/src/ch"), dir.path()).unwrap();
        assert_eq!(out, chapter);
    }

    #[test]
    fn missing_files_and_absent_or_empty_anchors_fail() {
        let dir = repo();
        let ch = dir.path().join("book/src/ch");
        let err =
            |inc: &str| expand(&format!("```\n{{{{#include {inc}}}}}\n```\n"), &ch, dir.path()).unwrap_err();
        assert!(err("../../../code/none.rs:a").contains("cannot read"));
        assert!(err("../../../code/x.rs:absent").contains("anchor `absent` not found"));
        assert!(err("../../../code/x.rs:empty").contains("anchor `empty` is empty"));
    }
}
