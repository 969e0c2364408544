//! The book's include check. mdBook silently inserts nothing for a missing anchor, so a chapter
//! can lose its code without anyone noticing; this check fails instead, on
//!
//! - an `{{#include PATH}}` (or `{{#rustdoc_include}}`) whose file does not exist,
//! - an `{{#include PATH:NAME}}` whose file has no `ANCHOR: NAME` … `ANCHOR_END: NAME` pair,
//! - an anchor with nothing between its markers;
//!
//! and [`unused_anchors`] lists the `ANCHOR:` markers in the code that no chapter includes (an
//! anchor nobody reads is a comment that rots: include it where a chapter needs it, or remove it).
//!
//! It runs as a test of this crate (so `cargo test --workspace` and `make test` run it) and as
//! `cargo run -p book-check`.

pub mod browser;
pub mod listings;

use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// One include that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The chapter holding the include.
    pub chapter: PathBuf,
    /// The include as written.
    pub include: String,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {{{{#include {}}}}}: {}", self.chapter.display(), self.include, self.reason)
    }
}

/// Checks every Markdown file under `src_dir`; returns the problems found.
pub fn check_book(src_dir: &Path) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let mut count = 0;
    for chapter in markdown_files(src_dir)? {
        let text =
            std::fs::read_to_string(&chapter).with_context(|| format!("reading {}", chapter.display()))?;
        for include in includes(&text) {
            count += 1;
            if let Err(reason) = check_include(chapter.parent().unwrap_or(src_dir), include) {
                problems.push(Problem { chapter: chapter.clone(), include: include.to_owned(), reason });
            }
        }
    }
    anyhow::ensure!(count > 0, "no {{{{#include}}}} found under {}: wrong folder?", src_dir.display());
    Ok(problems)
}

/// An `ANCHOR: NAME` in the code that no chapter includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusedAnchor {
    /// The file holding the marker, relative to the repository root.
    pub file: PathBuf,
    /// The anchor's name.
    pub anchor: String,
}

impl std::fmt::Display for UnusedAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ANCHOR {} is included by no chapter", self.file.display(), self.anchor)
    }
}

/// This crate's folder (`book/check`), as [`cruncan_config::crate_dir!`] finds it: the checkout
/// cargo runs it in, not the one that compiled it.
pub fn crate_dir() -> std::path::PathBuf {
    cruncan_config::crate_dir!()
}

/// The folders [`unused_anchors`] scans: every folder that holds code a chapter could show.
/// (Not book/check: its tests and docs spell the marker as data.)
pub const SCANNED: [&str; 5] = ["pkg", "flow", "reference", "scripts", "deploy"];

/// Folders never scanned for anchors: build output, VCS and stack state.
const NOT_SCANNED: [&str; 4] = [".git", "target", ".stack", "node_modules"];

// ANCHOR: unused_anchors
/// Every `ANCHOR: NAME` in the [`SCANNED`] folders under `root` that no
/// `{{#include FILE:NAME}}` in the chapters under `src_dir` names.
pub fn unused_anchors(root: &Path, src_dir: &Path) -> anyhow::Result<Vec<UnusedAnchor>> {
    let mut included = std::collections::BTreeSet::new();
    for chapter in markdown_files(src_dir)? {
        let text = std::fs::read_to_string(&chapter)?;
        for include in includes(&text) {
            if let Some((path, anchor)) = include.split_once(':')
                && let Ok(file) = chapter.parent().unwrap_or(src_dir).join(path).canonicalize()
            {
                included.insert((file, anchor.to_owned()));
            }
        }
    }
    let mut unused = Vec::new();
    let scanned = SCANNED.iter().map(|d| root.join(d)).filter(|d| d.is_dir());
    for file in scanned.map(|d| source_files(&d)).collect::<anyhow::Result<Vec<_>>>()?.concat() {
        let Ok(text) = std::fs::read_to_string(&file) else { continue }; // not text
        for line in text.lines() {
            let Some((_, name)) = line.split_once("ANCHOR: ") else { continue };
            let anchor = name.trim().to_owned();
            if !included.contains(&(file.canonicalize()?, anchor.clone())) {
                let relative = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
                unused.push(UnusedAnchor { file: relative, anchor });
            }
        }
    }
    Ok(unused)
}
// ANCHOR_END: unused_anchors

fn source_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !NOT_SCANNED.contains(&name) {
                out.extend(source_files(&path)?);
            }
        } else {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn markdown_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(markdown_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The argument of every `{{#include ...}}` / `{{#rustdoc_include ...}}` in `text`.
fn includes(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for directive in ["{{#include ", "{{#rustdoc_include "] {
        let mut rest = text;
        while let Some(start) = rest.find(directive) {
            rest = &rest[start + directive.len()..];
            if let Some(end) = rest.find("}}") {
                found.push(rest[..end].trim());
                rest = &rest[end..];
            }
        }
    }
    found
}

fn check_include(base: &Path, include: &str) -> Result<(), String> {
    let (path, selector) = match include.split_once(':') {
        Some((p, s)) => (p, Some(s)),
        None => (include, None),
    };
    let file = base.join(path);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let Some(anchor) = selector else { return Ok(()) };
    // `:10`, `:10:20`, `:10:` and `::20` are line ranges, not anchors.
    if anchor.split(':').all(|part| part.is_empty() || part.chars().all(|c| c.is_ascii_digit())) {
        return Ok(());
    }
    let start = format!("ANCHOR: {anchor}");
    let end = format!("ANCHOR_END: {anchor}");
    let lines: Vec<&str> = text.lines().collect();
    let begin = lines.iter().position(|l| l.trim_end().ends_with(&start));
    let finish = lines.iter().position(|l| l.trim_end().ends_with(&end));
    match (begin, finish) {
        (None, _) => Err(format!("anchor `{anchor}` not found in {}", file.display())),
        (Some(_), None) => Err(format!("anchor `{anchor}` has no ANCHOR_END in {}", file.display())),
        (Some(b), Some(f)) if f <= b => {
            Err(format!("anchor `{anchor}` ends before it starts in {}", file.display()))
        }
        (Some(b), Some(f)) => {
            let body = lines[b + 1..f].iter().filter(|l| !l.contains("ANCHOR")).any(|l| !l.trim().is_empty());
            if body { Ok(()) } else { Err(format!("anchor `{anchor}` is empty in {}", file.display())) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_book_has_no_broken_include() {
        let src = crate_dir().join("../src");
        let problems = check_book(&src).unwrap();
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(problems.is_empty(), "broken includes:\n{}", listed.join("\n"));
    }

    #[test]
    fn every_anchor_in_the_code_is_included_by_a_chapter() {
        let book = crate_dir().join("..");
        let unused = unused_anchors(&book.join(".."), &book.join("src")).unwrap();
        let listed: Vec<String> = unused.iter().map(ToString::to_string).collect();
        assert!(unused.is_empty(), "anchors no chapter includes:\n{}", listed.join("\n"));
    }

    #[test]
    fn an_anchor_no_chapter_includes_is_reported() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("src")).unwrap();
        std::fs::create_dir_all(root.path().join("pkg")).unwrap();
        std::fs::write(
            root.path().join("pkg/lib.rs"),
            "// ANCHOR: read\nfn f() {}\n// ANCHOR_END: read\n// ANCHOR: unread\nfn g() {}\n// ANCHOR_END: unread\n",
        )
        .unwrap();
        std::fs::write(root.path().join("src/ch.md"), "{{#include ../pkg/lib.rs:read}}\n").unwrap();
        let unused = unused_anchors(root.path(), &root.path().join("src")).unwrap();
        assert_eq!(unused, [UnusedAnchor { file: "pkg/lib.rs".into(), anchor: "unread".into() }]);
    }

    #[test]
    fn each_kind_of_breakage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("code.rs"),
            "// ANCHOR: good\nfn f() {}\n// ANCHOR_END: good\n// ANCHOR: empty\n\n// ANCHOR_END: empty\n// ANCHOR: open\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ch.md"),
            "{{#include code.rs:good}}\n{{#include code.rs:10:20}}\n{{#include code.rs}}\n\
             {{#include missing.rs}}\n{{#include code.rs:absent}}\n{{#include code.rs:empty}}\n{{#include code.rs:open}}\n",
        )
        .unwrap();
        let problems = check_book(dir.path()).unwrap();
        let reasons: Vec<&str> = problems.iter().map(|p| p.include.as_str()).collect();
        assert_eq!(reasons, ["missing.rs", "code.rs:absent", "code.rs:empty", "code.rs:open"]);
    }
}
