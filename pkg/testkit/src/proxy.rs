//! A TCP proxy a test cuts and restores, to take a real service away without stopping it.

use std::net::SocketAddr;
use std::sync::Arc;

/// A TCP proxy in front of a real service, which a test can cut and restore to simulate the
/// service going down and coming back (without stopping the shared service).
#[derive(Debug, Clone)]
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

#[derive(Debug)]
struct ProxyState {
    up: std::sync::atomic::AtomicBool,
    /// Bumped on every cut; connections of an older generation close.
    generation: tokio::sync::watch::Sender<u64>,
}

impl TcpProxy {
    /// Starts a proxy on 127.0.0.1 (OS-chosen port) forwarding to `upstream`, in the background.
    pub fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let state = Arc::new(ProxyState { up: std::sync::atomic::AtomicBool::new(true), generation });
        let st = Arc::clone(&state);
        std::thread::Builder::new().name("tcp-proxy".into()).spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else { return };
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !st.up.load(std::sync::atomic::Ordering::SeqCst) {
                        drop(inbound); // down: refuse by closing at once
                        continue;
                    }
                    let mut cut = st.generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            });
        })?;
        Ok(Self { addr, state })
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    // ANCHOR: proxy_cut
    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.state.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    // ANCHOR_END: proxy_cut
}
