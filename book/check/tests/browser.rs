//! The browser check against a small book built for the test: one clean page, and one page with
//! each breakage a reader could meet. Needs what `make tools` installs: mdbook, mdbook-mermaid,
//! Debian's chromium and chromium-driver.

#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use book_check::browser::{Options, check_site};
use std::path::Path;
use std::process::Command;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (make tools installs it)"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A book in `dir/book` whose `good` page is clean and whose `bad` page has every breakage.
fn build_book(dir: &Path) -> std::path::PathBuf {
    let book = dir.join("book");
    write(
        &book.join("book.toml"),
        &format!(
            "[book]\ntitle = \"t\"\nsrc = \"src\"\n\n[preprocessor.mermaid]\ncommand = \"mdbook-mermaid\"\n\n\
             [preprocessor.listings]\ncommand = \"{}\"\nbefore = [\"links\"]\n\n\
             [output.html]\nadditional-js = [\"mermaid.min.js\", \"mermaid-init.js\"]\n",
            env!("CARGO_BIN_EXE_book-listings")
        ),
    );
    write(&book.join("src/SUMMARY.md"), "# Summary\n\n- [Good](good.md)\n- [Bad](bad.md)\n");
    write(&dir.join("code/lib.rs"), "mod m {\n    // ANCHOR: f\n    fn f() {}\n    // ANCHOR_END: f\n}\n");
    write(&dir.join("code/empty.txt"), "");
    write(
        &book.join("src/good.md"),
        "# Good\n\n```mermaid\nsequenceDiagram\n    A->>B: BEGIN, INSERT, COMMIT\n```\n\n\
         ```rust,ignore\n{{#include ../../code/lib.rs:f}}\n```\n\n[bad](bad.md#bad) and [here](#good)\n",
    );
    write(
        &book.join("src/bad.md"),
        &format!(
            "# Bad\n\n```mermaid\nsequenceDiagram\n    A->>B: BEGIN; INSERT; COMMIT\n```\n\n\
             ```text\n{{{{#include ../../code/empty.txt}}}}\n```\n\n```text\n{}\n```\n\n\
             [gone](missing.md) and [no anchor](good.md#nowhere)\n\n| a | b |\n|---|---|\n| `{}` | b |\n",
            "wide ".repeat(80),
            "x".repeat(300)
        ),
    );
    run(Command::new("mdbook-mermaid").arg("install").arg(&book));
    run(Command::new("mdbook").arg("build").arg(&book));
    book.join("book")
}

#[tokio::test]
async fn each_breakage_a_reader_would_see_is_reported_and_a_clean_page_passes() {
    let dir = tempfile::tempdir().unwrap();
    let site = build_book(dir.path());
    let report = check_site(&Options::new(&site)).await.unwrap();
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    let all = problems.join("\n");
    assert!(problems.iter().all(|p| p.starts_with("bad.html: ")), "only the bad page is broken:\n{all}");
    let expect = [
        "mermaid diagram 1 shows \"Syntax error in text\"",
        "code block 1 (code/empty.txt) is empty",
        "code block 2 is ",
        "missing.html does not exist",
        "good.html has no element with id `nowhere`",
        "table 1 is ",
    ];
    for e in expect {
        assert!(problems.iter().any(|p| p.contains(e)), "expected a problem containing {e:?}; got:\n{all}");
    }
    assert_eq!(problems.len(), expect.len(), "exactly the expected problems:\n{all}");
    assert_eq!(report.pages, 3, "index, good and bad");
    assert_eq!(report.diagrams, 3, "good, bad, and index.html repeating the first chapter");
}

#[tokio::test]
async fn side_arrows_over_a_column_widened_without_moving_them_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("book");
    write(
        &book.join("book.toml"),
        "[book]\ntitle = \"t\"\n\n[output.html]\nadditional-css = [\"wide.css\"]\n",
    );
    write(&book.join("wide.css"), ":root { --content-max-width: 1400px; }\n");
    write(&book.join("src/SUMMARY.md"), "# Summary\n\n- [One](one.md)\n- [Two](two.md)\n");
    write(&book.join("src/one.md"), "# One\n\nText.\n");
    write(&book.join("src/two.md"), "# Two\n\nText.\n");
    run(Command::new("mdbook").arg("build").arg(&book));
    let report = check_site(&Options::new(book.join("book"))).await.unwrap();
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert!(
        problems.iter().any(|p| p.contains("a side navigation arrow covers the text column")),
        "expected the arrows over the widened column to be reported; got {problems:?}"
    );
}

#[test]
fn the_listings_preprocessor_labels_and_dedents_in_a_real_build() {
    let dir = tempfile::tempdir().unwrap();
    let site = build_book(dir.path());
    let html = std::fs::read_to_string(site.join("good.html")).unwrap();
    assert!(html.contains("<div class=\"listing-file\">code/lib.rs</div>"), "label missing:\n{html}");
    assert!(html.contains("<code class=\"language-rust ignore\">fn f() {}"), "not dedented:\n{html}");
}
