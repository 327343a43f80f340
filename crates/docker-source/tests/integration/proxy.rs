//! A TCP proxy to the daemon's Unix socket that can make the `/events` answers silent
//! (dropped: a half-open connection as the source sees it) or hold them back and then deliver
//! them (a source that is behind on the daemon's events, as on a busy host).

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UnixStream},
    sync::watch,
    task::JoinSet,
};

pub(crate) struct FreezingProxy {
    pub(crate) address: std::net::SocketAddr,
    /// While set, `/events` answers are dropped.
    pub(crate) frozen: Arc<AtomicBool>,
    /// Bytes of `/events` answers dropped while frozen.
    pub(crate) withheld: Arc<AtomicU64>,
    /// The source's ports of its `/events` connections.
    pub(crate) events_ports: Arc<std::sync::Mutex<Vec<u16>>>,
    /// While `true`, `/events` answers are kept, and delivered in order once it is `false`.
    held: watch::Sender<bool>,
    _tasks: JoinSet<()>,
}

/// What one relayed connection shares with the proxy.
#[derive(Clone)]
struct Controls {
    frozen: Arc<AtomicBool>,
    withheld: Arc<AtomicU64>,
    ports: Arc<std::sync::Mutex<Vec<u16>>>,
    held: watch::Receiver<bool>,
}

impl FreezingProxy {
    pub(crate) async fn start() -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (held, held_rx) = watch::channel(false);
        let controls = Controls {
            frozen: Arc::new(AtomicBool::new(false)),
            withheld: Arc::new(AtomicU64::new(0)),
            ports: Arc::new(std::sync::Mutex::new(Vec::new())),
            held: held_rx,
        };
        let mut tasks = JoinSet::new();
        let shared = controls.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((client, peer)) = listener.accept().await else {
                    return;
                };
                let controls = shared.clone();
                connections.spawn(async move {
                    let _ = relay(client, peer.port(), controls).await;
                });
            }
        });
        FreezingProxy {
            address,
            frozen: controls.frozen,
            withheld: controls.withheld,
            events_ports: controls.ports,
            held,
            _tasks: tasks,
        }
    }

    /// Holds the `/events` answers back (`true`), or delivers what was held and lets the rest
    /// through (`false`).
    pub(crate) fn hold_events(&self, hold: bool) {
        self.held.send_replace(hold);
    }
}

fn daemon_socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned())
}

/// Relays one connection; an `/events` answer is dropped while the proxy is frozen, kept while
/// it is held.
async fn relay(client: TcpStream, port: u16, mut controls: Controls) -> std::io::Result<()> {
    let daemon = UnixStream::connect(daemon_socket()).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut daemon_read, mut daemon_write) = daemon.into_split();
    // The request head tells whether this is the events stream.
    let mut head = vec![0u8; 4096];
    let read = client_read.read(&mut head).await?;
    let is_events = head[..read].windows(8).any(|w| w == b"/events?");
    if is_events {
        controls.ports.lock().unwrap().push(port);
    }
    daemon_write.write_all(&head[..read]).await?;
    let upstream = tokio::io::copy(&mut client_read, &mut daemon_write);
    let downstream = async {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut kept = Vec::new();
        let mut controlled = true;
        loop {
            tokio::select! {
                read = daemon_read.read(&mut buffer) => {
                    let read = read?;
                    if read == 0 {
                        client_write.write_all(&kept).await?;
                        return Ok::<_, std::io::Error>(());
                    }
                    if is_events && controls.frozen.load(Ordering::SeqCst) {
                        controls.withheld.fetch_add(read as u64, Ordering::SeqCst);
                        continue;
                    }
                    kept.extend_from_slice(&buffer[..read]);
                }
                changed = controls.held.changed(), if controlled => {
                    controlled = changed.is_ok();
                }
            }
            let holding = is_events && controlled && *controls.held.borrow();
            if !holding && !kept.is_empty() {
                client_write.write_all(&kept).await?;
                kept.clear();
            }
        }
    };
    let _ = tokio::join!(upstream, downstream);
    Ok(())
}
