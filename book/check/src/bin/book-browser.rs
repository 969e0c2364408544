//! `cargo run -p book-check --bin book-browser [SITE] [--screenshots DIR] [--window WxH]`: renders
//! every page of the built book (default `book/book`) in headless Chromium and exits 1 when a
//! reader would see something broken (see `book_check::browser`).

use anyhow::Context as _;
use book_check::browser::{Options, check_site};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut opts = Options::new(book_check::crate_dir().join("../book"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--screenshots" => {
                let dir = std::path::PathBuf::from(args.next().context("--screenshots needs a folder")?);
                std::fs::create_dir_all(&dir)?;
                opts.screenshots = Some(dir);
            }
            "--window" => {
                let size = args.next().context("--window needs WIDTHxHEIGHT")?;
                let (w, h) = size.split_once('x').context("--window WIDTHxHEIGHT")?;
                opts.window = (w.parse()?, h.parse()?);
            }
            site => opts.site = site.into(),
        }
    }
    let started = std::time::Instant::now();
    let report = check_site(&opts).await?;
    for p in &report.problems {
        eprintln!("{p}");
    }
    let summary = format!(
        "{} pages, {} code blocks, {} diagrams, {} internal links in {:.1} s",
        report.pages,
        report.code_blocks,
        report.diagrams,
        report.links,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        report.problems.is_empty(),
        "{} problem(s) a reader would see; {summary}",
        report.problems.len()
    );
    println!("book renders ok: {summary}");
    Ok(())
}
