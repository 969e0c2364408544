//! `cargo run -p book-check [BOOK_SRC]`: lists broken includes and anchors no chapter includes,
//! exits 1 when there is one.

fn main() -> anyhow::Result<()> {
    let src = std::env::args()
        .nth(1)
        .unwrap_or_else(|| book_check::crate_dir().join("../src").to_string_lossy().into_owned());
    let problems = book_check::check_book(std::path::Path::new(&src))?;
    for p in &problems {
        eprintln!("{p}");
    }
    anyhow::ensure!(problems.is_empty(), "{} broken include(s)", problems.len());
    let root = std::path::Path::new(&src).join("../..");
    let unused = book_check::unused_anchors(&root, std::path::Path::new(&src))?;
    for u in &unused {
        eprintln!("{u}");
    }
    anyhow::ensure!(unused.is_empty(), "{} anchor(s) included by no chapter", unused.len());
    println!("book includes ok; every anchor is included");
    Ok(())
}
