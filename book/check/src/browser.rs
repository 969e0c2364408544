//! The browser check: every page of the built book, rendered by a real headless Chromium (Debian's
//! `chromium`, driven through `chromedriver` with fantoccini), fails the build on what a reader
//! would see broken:
//!
//! - a mermaid diagram that shows a syntax error, or never rendered;
//! - a code block with nothing in it (an include that rendered nothing), or an include directive
//!   left in the text;
//! - a code block or a table wider than its column (`scrollWidth > clientWidth`: the reader gets
//!   a scrollbar and a cut line);
//! - an internal link to a page that does not exist, or to an anchor the page does not have;
//! - mdBook's side navigation arrows lying over the text column.
//!
//! The book is served from its output folder on a loopback port chosen by the OS; external links
//! are not followed (the check needs no network).

use anyhow::Context as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How to run the check.
#[derive(Debug, Clone)]
pub struct Options {
    /// The built book (`book/book`).
    pub site: PathBuf,
    /// Window size in CSS pixels; the default is a 1440×900 laptop window with the sidebar open.
    pub window: (u32, u32),
    /// Write PNGs of every page into this folder, one per window height.
    pub screenshots: Option<PathBuf>,
    /// The browser binary.
    pub chromium: PathBuf,
    /// The WebDriver binary matching it.
    pub chromedriver: PathBuf,
}

impl Options {
    /// Debian's paths and a 1440×900 window.
    pub fn new(site: impl Into<PathBuf>) -> Self {
        Self {
            site: site.into(),
            window: (1440, 900),
            screenshots: None,
            chromium: "/usr/bin/chromium".into(),
            chromedriver: "/usr/bin/chromedriver".into(),
        }
    }
}

/// One thing a reader would see broken.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageProblem {
    /// The page, relative to the site root (`one/outbox.html`).
    pub page: String,
    /// What is wrong, in words.
    pub what: String,
}

impl std::fmt::Display for PageProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.page, self.what)
    }
}

/// What the check saw.
#[derive(Debug, Clone)]
pub struct Report {
    /// Pages rendered.
    pub pages: usize,
    /// Code blocks measured.
    pub code_blocks: usize,
    /// Mermaid diagrams rendered.
    pub diagrams: usize,
    /// Internal links followed.
    pub links: usize,
    /// Everything broken, sorted by page.
    pub problems: Vec<PageProblem>,
}

/// What the in-page script reports for one page.
#[derive(Debug, Deserialize)]
struct PageFacts {
    problems: Vec<String>,
    links: Vec<String>,
    ids: Vec<String>,
    code_blocks: usize,
    diagrams: usize,
    height: u32,
}

// ANCHOR: page_script
/// Runs in the page (WebDriver `execute/async`): waits for mermaid, then measures.
const PAGE_SCRIPT: &str = r#"
const done = arguments[arguments.length - 1];
const started = Date.now();
function label(el) {
  const prev = el.previousElementSibling;
  return prev && prev.classList.contains('listing-file') ? ' (' + prev.textContent + ')' : '';
}
function collect() {
  const pending = document.querySelectorAll('pre.mermaid:not([data-processed])');
  if (pending.length && Date.now() - started < 30000) { setTimeout(collect, 50); return; }
  const main = document.querySelector('main') || document.body;
  const problems = [];
  if (pending.length) problems.push(pending.length + ' mermaid diagram(s) never rendered');
  const diagrams = main.querySelectorAll('pre.mermaid');
  diagrams.forEach((d, i) => {
    const error = d.textContent.match(/(Syntax|Parse|Lexical) error( in text)?/i);
    if (error || d.querySelector('[aria-roledescription=error]'))
      problems.push('mermaid diagram ' + (i + 1) + ' shows "' + (error ? error[0].trim() : 'an error') + '"');
  });
  const blocks = [...main.querySelectorAll('pre:not(.mermaid)')];
  blocks.forEach((pre, i) => {
    const n = 'code block ' + (i + 1) + label(pre);
    if (pre.textContent.trim() === '') problems.push(n + ' is empty (an include that rendered nothing?)');
    for (const el of [pre, ...pre.querySelectorAll('code')]) {
      if (el.scrollWidth > el.clientWidth + 1) {
        const longest = pre.textContent.split('\n').reduce((a, b) => (b.length > a.length ? b : a), '');
        problems.push(n + ' is ' + el.scrollWidth + ' px wide in a ' + el.clientWidth +
          ' px column; longest line (' + longest.length + ' chars): ' + longest.trim().slice(0, 100));
        break;
      }
    }
  });
  main.querySelectorAll('.table-wrapper').forEach((t, i) => {
    if (t.scrollWidth > t.clientWidth + 1)
      problems.push('table ' + (i + 1) + ' is ' + t.scrollWidth + ' px wide in a ' + t.clientWidth + ' px column');
  });
  // Built from parts, so that this listing, shown in the book, is not a directive itself.
  const directive = new RegExp('\\{\\{#' + 'include\\s+[^}]+\\}\\}');
  if (directive.test(main.textContent)) problems.push('an include directive was left in the text');
  const column = main.getBoundingClientRect();
  for (const arrow of document.querySelectorAll('.nav-wide-wrapper .nav-chapters')) {
    const r = arrow.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && r.right > column.left && r.left < column.right) {
      problems.push('a side navigation arrow covers the text column');
      break;
    }
  }
  const links = [...main.querySelectorAll('a[href]')].map(a => a.href);
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  done({ problems, links, ids, code_blocks: blocks.length, diagrams: diagrams.length,
         height: document.documentElement.scrollHeight });
}
collect();
"#;
// ANCHOR_END: page_script

/// Renders every page of `opts.site` and reports what is broken.
pub async fn check_site(opts: &Options) -> anyhow::Result<Report> {
    let pages = html_pages(&opts.site)?;
    anyhow::ensure!(!pages.is_empty(), "no HTML pages under {}: build the book first", opts.site.display());
    let server = serve(&opts.site).await?;
    let driver = Driver::start(&opts.chromedriver).await?;
    let profile = tempfile::tempdir().context("a profile folder for Chromium")?;
    let client = connect(&driver, opts, profile.path()).await?;
    let result = visit_all(&client, server, &pages, opts).await;
    let _ = client.close().await;
    drop(driver);
    drop(profile);
    let (facts, mut problems) = result?;
    let mut links = 0;
    for (page, f) in &facts {
        for link in &f.links {
            let Some(target) = internal_target(link, server) else { continue };
            links += 1;
            if let Some(what) = check_link(&opts.site, &facts, &target) {
                problems.push(PageProblem { page: page.clone(), what: format!("link {link}: {what}") });
            }
        }
    }
    problems.sort();
    Ok(Report {
        pages: facts.len(),
        code_blocks: facts.values().map(|f| f.code_blocks).sum(),
        diagrams: facts.values().map(|f| f.diagrams).sum(),
        links,
        problems,
    })
}

type Visited = (BTreeMap<String, PageFacts>, Vec<PageProblem>);

async fn visit_all(
    client: &fantoccini::Client,
    server: SocketAddr,
    pages: &[String],
    opts: &Options,
) -> anyhow::Result<Visited> {
    let mut facts = BTreeMap::new();
    let mut problems = Vec::new();
    let height = opts.window.1;
    for page in pages {
        client.goto(&format!("http://{server}/{page}")).await.with_context(|| format!("opening {page}"))?;
        let value =
            client.execute_async(PAGE_SCRIPT, vec![]).await.with_context(|| format!("measuring {page}"))?;
        let f: PageFacts =
            serde_json::from_value(value).with_context(|| format!("reading facts of {page}"))?;
        problems.extend(f.problems.iter().map(|what| PageProblem { page: page.clone(), what: what.clone() }));
        if let Some(dir) = &opts.screenshots {
            // One PNG per window height, as a reader scrolls: page_1.png, page_2.png, …
            let stem = page.replace('/', "_").replace(".html", "");
            for (i, y) in (0..f.height).step_by(height as usize).take(20).enumerate() {
                client.execute(&format!("window.scrollTo(0, {y})"), vec![]).await?;
                std::fs::write(dir.join(format!("{stem}_{}.png", i + 1)), client.screenshot().await?)?;
            }
        }
        facts.insert(page.clone(), f);
    }
    Ok((facts, problems))
}

/// Every `.html` file of the site, relative and sorted, less three that are not chapters:
/// `toc.html` (the sidebar's no-script fallback), `print.html` (every chapter again, on one page)
/// and `404.html` (its links resolve against the site root by design).
fn html_pages(site: &Path) -> anyhow::Result<Vec<String>> {
    fn walk(dir: &Path, site: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, site, out)?;
            } else if path.extension().is_some_and(|e| e == "html") {
                let rel = path.strip_prefix(site)?.to_string_lossy().replace('\\', "/");
                if !["toc.html", "print.html", "404.html"].contains(&rel.as_str()) {
                    out.push(rel);
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(site, site, &mut out)?;
    out.sort();
    Ok(out)
}

/// A link's target on our server: (`page` relative to the site, `fragment`); `None` for
/// external links.
fn internal_target(link: &str, server: SocketAddr) -> Option<(String, String)> {
    let rest = link.strip_prefix(&format!("http://{server}/"))?;
    let (path, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let path = path.split('?').next().unwrap_or_default();
    let path =
        if path.is_empty() || path.ends_with('/') { format!("{path}index.html") } else { path.to_owned() };
    Some((percent_decode(&path), percent_decode(fragment)))
}

fn check_link(
    site: &Path,
    facts: &BTreeMap<String, PageFacts>,
    (page, fragment): &(String, String),
) -> Option<String> {
    match facts.get(page) {
        Some(f) if fragment.is_empty() || f.ids.iter().any(|id| id == fragment) => None,
        Some(_) => Some(format!("{page} has no element with id `{fragment}`")),
        None if site.join(page).is_file() => None,
        None => Some(format!("{page} does not exist")),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves `site` on 127.0.0.1 (port chosen by the OS) for as long as the process runs.
async fn serve(site: &Path) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the book server")?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(site));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// A `chromedriver` child process on a free loopback port, killed on drop.
struct Driver {
    url: String,
    _child: tokio::process::Child,
}

impl Driver {
    async fn start(binary: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: install Debian's chromium and chromium-driver (make tools)",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "chromedriver did not listen on :{port} within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { url: format!("http://127.0.0.1:{port}"), _child: child })
    }
}

// ANCHOR: chromium_flags
/// Headless Chromium as root in a container: no sandbox, no GPU, nothing that phones home, and a
/// fresh profile per run.
async fn connect(driver: &Driver, opts: &Options, profile: &Path) -> anyhow::Result<fantoccini::Client> {
    let (w, h) = opts.window;
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        &format!("--window-size={w},{h}"),
        &format!("--user-data-dir={}", profile.display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": opts.chromium, "args": args }));
    // The page script waits up to 30 s for mermaid on a busy machine; WebDriver's default script
    // timeout is 30 s, so give it room.
    caps.insert("timeouts".into(), serde_json::json!({ "script": 60_000, "pageLoad": 60_000 }));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = fantoccini::ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .with_context(|| format!("starting {} through chromedriver", opts.chromium.display()))?;
    client.set_window_size(w, h).await?;
    Ok(client)
}
// ANCHOR_END: chromium_flags

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_links_resolve_to_pages_and_fragments() {
        let server: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            internal_target("http://127.0.0.1:4000/one/outbox.html#the-relay", server),
            Some(("one/outbox.html".into(), "the-relay".into()))
        );
        assert_eq!(
            internal_target("http://127.0.0.1:4000/", server),
            Some(("index.html".into(), String::new()))
        );
        assert_eq!(
            internal_target("http://127.0.0.1:4000/a%20b.html#caf%C3%A9", server),
            Some(("a b.html".into(), "café".into()))
        );
        assert_eq!(internal_target("https://docs.rs/x", server), None);
    }
}
