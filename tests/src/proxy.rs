//! A fault-injecting TCP proxy for tests: forwards every connection to an upstream address,
//! and on demand (or at random moments) drops every connection and refuses new ones for a
//! while, as a flaky network or a sleeping laptop would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A running proxy.
pub struct FaultProxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    /// Outages caused so far.
    pub drops: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on an ephemeral loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let down = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let (down, connections) = (down.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        drop(client); // refused while the network is down
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let mut client = client;
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
                    let mut live = connections.lock().unwrap();
                    live.retain(|c| !c.is_finished());
                    live.push(task.abort_handle());
                }
            })
        };
        FaultProxy {
            addr,
            down,
            connections,
            drops: Arc::new(AtomicU64::new(0)),
            accept,
        }
    }

    /// Drop every connection now and refuse new ones for `outage`.
    pub async fn outage(&self, outage: Duration) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
        self.drops.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(outage).await;
        self.down.store(false, Ordering::SeqCst);
    }

    /// Cause outages of at most `max_outage` at random moments (every `min_gap` to
    /// `max_gap`) until the returned flag is set.
    pub fn chaos(
        self: &Arc<Self>,
        min_gap: Duration,
        max_gap: Duration,
        max_outage: Duration,
    ) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        let (proxy, stop_flag) = (self.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
            let mut next = |max: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % max.max(1)
            };
            while !stop_flag.load(Ordering::SeqCst) {
                let gap = min_gap.as_millis() as u64 + next((max_gap - min_gap).as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(gap)).await;
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                proxy
                    .outage(Duration::from_millis(
                        1 + next(max_outage.as_millis() as u64),
                    ))
                    .await;
            }
        });
        stop
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}
