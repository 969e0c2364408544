//! The page in two headless Chromium sessions (Debian's `chromium` through `chromedriver`, the
//! way book/check drives it): alice and bob sign in; alice shares a note and edits it; bob's page
//! shows both without a reload. Then bob's connection is cut (a TCP proxy between his browser and
//! the gateway): his indicator shows the reconnect, and the edit made meanwhile arrives through
//! the resume. Screenshots go to target/notes-browser/.

use crate::helpers::*;
use anyhow::Context as _;
use fantoccini::{Client, Locator};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A `chromedriver` child process on a free loopback port, killed on drop.
struct Driver {
    url: String,
    _child: tokio::process::Child,
}

impl Driver {
    async fn start() -> anyhow::Result<Self> {
        anyhow::ensure!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "install Debian's chromium and chromium-driver (make tools)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "chromedriver did not listen on :{port} within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { url: format!("http://127.0.0.1:{port}"), _child: child })
    }

    /// A headless Chromium with its own profile.
    async fn browser(&self, profile: &Path) -> anyhow::Result<Client> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,700",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": CHROMIUM, "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        Ok(fantoccini::ClientBuilder::new(connector).capabilities(caps).connect(&self.url).await?)
    }
}

/// Polls a JavaScript expression until it returns `want`.
async fn wait_js(c: &Client, what: &str, expr: &str, want: serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        last = c.execute(&format!("return {expr};"), vec![]).await.unwrap_or(serde_json::Value::Null);
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: waited for {expr} == {want}, last {last}");
}

async fn sign_in(c: &Client, url: &str, name: &str) {
    c.goto(url).await.unwrap();
    c.find(Locator::Id("name")).await.unwrap().send_keys(name).await.unwrap();
    c.find(Locator::Id("signin")).await.unwrap().click().await.unwrap();
    wait_js(c, "the socket is open", "document.getElementById('conn').dataset.state", "open".into()).await;
}

/// Clicks the first element matching `css`, again if the page re-rendered it between the find
/// and the click (a pushed event replaces the note cards: "stale element reference").
async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let result = async { c.find(Locator::Css(css)).await?.click().await }.await;
        match result {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying the click on {css}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("clicking {css}: {e}"),
        }
    }
}

fn shots() -> PathBuf {
    let dir = cruncan_config::workspace_dir().join("target/notes-browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(name), png).unwrap();
}

const NOTE_BODY: &str = "[...document.querySelectorAll('.note')].find(n => n.querySelector('.title')?.textContent === 'Trip plan')?.querySelector('.body')?.textContent ?? null";

// ANCHOR: browser_test
#[tokio::test]
async fn two_browsers_share_and_edit_a_note_live() {
    let built = tokio::process::Command::new(cruncan_config::workspace_dir().join("scripts/notes-web.sh"))
        .status()
        .await
        .unwrap();
    assert!(built.success(), "scripts/notes-web.sh failed");
    // Bob's page comes through the proxy, whose origin the services must allow too.
    let app = spawn_app_with(|s| {
        s.users.cors_origins = vec!["*".into()];
        s.notes.cors_origins = vec!["*".into()];
    })
    .await;
    let proxy = cruncan_testkit::TcpProxy::start(app.gateway).unwrap();
    let driver = Driver::start().await.unwrap();
    let profiles = tempfile::tempdir().unwrap();
    let alice = driver.browser(&profiles.path().join("a")).await.unwrap();
    let bob = driver.browser(&profiles.path().join("b")).await.unwrap();

    // Bob first, so alice's share picker lists him; bob's page goes through the proxy.
    sign_in(&bob, &format!("http://{}/", proxy.addr()), "bob").await;
    sign_in(&alice, &format!("http://{}/", app.gateway), "alice").await;
    let bob_id = app.list_users().await.into_iter().find(|(_, n)| n == "bob").unwrap().0;
    app.wait_known(&bob_id).await;

    // Alice writes a note and shares it with bob: it appears on bob's page.
    alice.find(Locator::Id("new-title")).await.unwrap().send_keys("Trip plan").await.unwrap();
    alice.find(Locator::Id("new-body")).await.unwrap().send_keys("train at 9").await.unwrap();
    click(&alice, "#create").await;
    wait_js(&alice, "alice sees her note", NOTE_BODY, "train at 9".into()).await;
    click(&alice, ".note .share").await;
    wait_js(&bob, "the shared note appears on bob's page", NOTE_BODY, "train at 9".into()).await;
    screenshot(&bob, "1-bob-sees-shared-note.png").await;

    // Alice edits it: bob's page changes.
    click(&alice, ".note .edit").await;
    let body = alice.find(Locator::Css(".note .edit-body")).await.unwrap();
    body.clear().await.unwrap();
    body.send_keys("train at 10, platform 4").await.unwrap();
    screenshot(&alice, "2-alice-edits.png").await;
    click(&alice, ".note .save").await;
    wait_js(&bob, "the edit appears on bob's page", NOTE_BODY, "train at 10, platform 4".into()).await;
    screenshot(&bob, "3-bob-sees-the-edit.png").await;

    // Bob's connection drops; alice edits meanwhile; bob's page reconnects and catches up.
    proxy.cut();
    wait_js(
        &bob,
        "bob's indicator shows the drop",
        "document.getElementById('conn').dataset.state",
        "reconnecting".into(),
    )
    .await;
    screenshot(&bob, "4-bob-reconnecting.png").await;
    click(&alice, ".note .edit").await;
    let body = alice.find(Locator::Css(".note .edit-body")).await.unwrap();
    body.clear().await.unwrap();
    body.send_keys("cancelled: rain").await.unwrap();
    click(&alice, ".note .save").await;
    wait_js(&alice, "alice saved", NOTE_BODY, "cancelled: rain".into()).await;
    proxy.restore();
    wait_js(&bob, "bob is live again", "document.getElementById('conn').dataset.state", "open".into()).await;
    wait_js(&bob, "the edit made during the drop arrives", NOTE_BODY, "cancelled: rain".into()).await;
    let reconnects = bob.find(Locator::Id("reconnects")).await.unwrap().text().await.unwrap();
    assert!(!reconnects.starts_with('0'), "{reconnects}");
    screenshot(&bob, "5-bob-caught-up.png").await;

    alice.close().await.unwrap();
    bob.close().await.unwrap();
    app.stop().await;
}
// ANCHOR_END: browser_test
