//! A real three-node NATS JetStream cluster on loopback, for the end-to-end
//! tests of the JetStream-backed log: start it, read who leads what from
//! the servers' monitoring endpoints, kill and restart nodes.
//!
//! The binary is `$NATS_SERVER`, else `nats-server` from `PATH`, else
//! `/usr/sbin/nats-server` (Debian's, which `./test` installs). Nodes `n0`,
//! `n1`, `n2` each have client, cluster and monitoring ports on 127.0.0.1
//! chosen at run time, and a JetStream store, config and log file in a
//! temporary directory the cluster owns. Dropping the cluster kills every
//! node, also when the test panics.
//!
//! Leaders are read from `GET /jsz` (checked against nats-server 2.9.10):
//! `meta_cluster.leader`, and with `?streams=true`
//! `account_details[].stream_detail[].cluster.leader`, each a server name.
//! A follower goes on naming a killed leader for a few seconds, so a node
//! counts as leader only while it is running and names itself.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How many nodes a cluster has.
const NODES: usize = 3;

/// How long [`NatsCluster::start`] and [`NatsCluster::restart`] wait.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Three `nats-server` processes forming the JetStream cluster `nodb`.
pub struct NatsCluster {
    nodes: Vec<Node>,
    // Dropped after the nodes are killed (see `Drop`).
    dir: tempfile::TempDir,
}

/// Node `n{i}`: its ports, and its process while it runs. Its files are
/// `n{i}.conf`, `n{i}.log` and `n{i}-store/` in the cluster's directory.
struct Node {
    client_port: u16,
    http_port: u16,
    child: Mutex<Option<Child>>,
}

impl NatsCluster {
    /// Starts the three nodes and waits (up to 30 s) until JetStream is
    /// ready cluster-wide: every node's `/jsz` answers and names the same
    /// meta leader, which names itself.
    ///
    /// # Panics
    /// If `nats-server` cannot be started or the cluster is not ready in
    /// time (the message has the tail of every node's log).
    pub fn start() -> NatsCluster {
        let dir = tempfile::Builder::new().prefix("nodb-nats-").tempdir().expect("a temporary directory");
        let mut ports = Vec::new();
        while ports.len() < 3 * NODES {
            // A port that was free on 127.0.0.1 a moment ago.
            let port: u16 = crate::free_addr().rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("a port");
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let routes: Vec<String> = (0..NODES).map(|i| format!("nats-route://127.0.0.1:{}", ports[3 * i + 1])).collect();
        let nodes = (0..NODES)
            .map(|i| {
                let (client_port, cluster_port, http_port) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
                let store = dir.path().join(format!("n{i}-store"));
                let text = format!(
                    "server_name: n{i}\n\
                     listen: \"127.0.0.1:{client_port}\"\n\
                     http: \"127.0.0.1:{http_port}\"\n\
                     jetstream {{ store_dir: {store:?} }}\n\
                     cluster {{\n  name: nodb\n  listen: \"127.0.0.1:{cluster_port}\"\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                );
                std::fs::write(dir.path().join(format!("n{i}.conf")), text).expect("write a nats-server config");
                Node { client_port, http_port, child: Mutex::new(None) }
            })
            .collect();
        let mut cluster = NatsCluster { nodes, dir };
        for i in 0..NODES {
            cluster.spawn(i);
        }
        cluster.wait_until("JetStream ready on every node, with one meta leader", READY_WITHIN, |c| {
            c.assert_running(0..NODES);
            let leader = c.meta_leader()?;
            (0..NODES).all(|i| c.meta_leader_seen_by(i) == Some(leader)).then_some(())
        });
        cluster
    }

    /// The client URLs of all three nodes, comma-separated:
    /// `nats://127.0.0.1:P0,nats://127.0.0.1:P1,nats://127.0.0.1:P2`.
    pub fn urls(&self) -> String {
        (0..NODES).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    /// The client URL of node `i`, `nats://127.0.0.1:PORT`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Whether node `i`'s process is running (not killed, not exited).
    pub fn is_running(&self, i: usize) -> bool {
        let mut child = self.nodes[i].child.lock().unwrap_or_else(|e| e.into_inner());
        matches!(child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills node `i` with SIGKILL and waits for it to exit. Its store and
    /// ports stay, for [`restart`](Self::restart).
    pub fn kill(&mut self, i: usize) {
        let child = self.nodes[i].child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again, with the same config, store and ports, and
    /// waits (up to 30 s) until its monitoring endpoint answers. Whether it
    /// has caught up with the cluster is for the caller to wait for.
    ///
    /// # Panics
    /// If node `i` is running, or does not answer in time.
    pub fn restart(&mut self, i: usize) {
        assert!(!self.is_running(i), "restart: node n{i} is running");
        self.kill(i); // reaps it, if it exited by itself
        self.spawn(i);
        self.wait_until(&format!("n{i} answering /jsz after its restart"), READY_WITHIN, |c| {
            c.assert_running(std::iter::once(i));
            c.jsz(i, "").map(drop)
        });
    }

    /// The node that leads the JetStream meta group now: a running node
    /// that names itself as meta leader. `None` during an election.
    pub fn meta_leader(&self) -> Option<usize> {
        self.leader_by(|i| self.meta_leader_seen_by(i))
    }

    /// The meta leader that node `i` names in its `/jsz` (`None` if it is
    /// not running, does not answer or knows no leader). It may name a
    /// node that was killed a moment ago.
    pub fn meta_leader_seen_by(&self, i: usize) -> Option<usize> {
        let jsz = self.jsz(i, "")?;
        self.index_of(jsz["meta_cluster"]["leader"].as_str()?)
    }

    /// The node that leads the stream named `stream` now: a running node
    /// that names itself as its leader. `None` if there is none (no such
    /// stream, or an election under way).
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        self.leader_by(|i| self.stream_leader_seen_by(i, stream))
    }

    /// The leader of the stream named `stream` that node `i` names in its
    /// `/jsz?streams=true` (`None` if it does not know the stream, does
    /// not answer or knows no leader).
    pub fn stream_leader_seen_by(&self, i: usize, stream: &str) -> Option<usize> {
        let jsz = self.jsz(i, "?streams=true")?;
        let accounts = jsz["account_details"].as_array()?;
        let detail = accounts
            .iter()
            .filter_map(|a| a["stream_detail"].as_array())
            .flatten()
            .find(|s| s["name"].as_str() == Some(stream))?;
        self.index_of(detail["cluster"]["leader"].as_str()?)
    }

    /// `GET /jsz{query}` of node `i` as JSON (`query` is empty or starts
    /// with `?`); `None` if the node is not running or does not answer.
    pub fn jsz(&self, i: usize, query: &str) -> Option<Value> {
        if !self.is_running(i) {
            return None;
        }
        let url = format!("http://127.0.0.1:{}/jsz{query}", self.nodes[i].http_port);
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
        let body = agent.get(&url).call().ok()?.into_body().read_to_string().ok()?;
        serde_json::from_str(&body).ok()
    }

    /// Polls `f` every 50 ms until it returns `Some`, and returns that.
    ///
    /// # Panics
    /// If `within` passes first; the message names `what` and has the tail
    /// of every node's log.
    pub fn wait_until<T>(&self, what: &str, within: Duration, mut f: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("not within {within:?}: {what}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of every node's log, each under a header naming the
    /// node and whether it is running: for the message of a failing test.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..NODES {
            let log = self.file(i, ".log");
            let state = if self.is_running(i) { "running" } else { "not running" };
            out.push_str(&format!("--- n{i} ({state}), {}:\n", log.display()));
            out.push_str(&tail(&log, 40));
        }
        out
    }

    /// Starts node `i`'s process, appending its output to its log file.
    fn spawn(&mut self, i: usize) {
        let log = OpenOptions::new().create(true).append(true).open(self.file(i, ".log")).expect("open a node's log");
        let bin = nats_server_bin();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(self.file(i, ".conf"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {}: {e} (install nats-server or set NATS_SERVER)", bin.to_string_lossy())
            });
        *self.nodes[i].child.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// The one running node that names itself, among those named by
    /// `seen_by`; the most named if several do (a deposed leader that has
    /// not noticed yet).
    fn leader_by(&self, seen_by: impl Fn(usize) -> Option<usize>) -> Option<usize> {
        let seen: Vec<Option<usize>> = (0..NODES).map(seen_by).collect();
        (0..NODES).filter(|&j| seen[j] == Some(j)).max_by_key(|&j| seen.iter().filter(|s| **s == Some(j)).count())
    }

    /// Panics with the logs if one of `nodes` has exited: a node that
    /// cannot start (a taken port, a bad binary) fails the test at once.
    fn assert_running(&self, mut nodes: impl Iterator<Item = usize>) {
        if let Some(i) = nodes.find(|&i| !self.is_running(i)) {
            panic!("nats-server n{i} exited\n{}", self.logs());
        }
    }

    /// The node index of server name `n{i}`.
    fn index_of(&self, server_name: &str) -> Option<usize> {
        server_name.strip_prefix('n')?.parse().ok().filter(|&i| i < NODES)
    }

    /// The path of node `i`'s file `n{i}{suffix}` in the cluster's directory.
    fn file(&self, i: usize, suffix: &str) -> PathBuf {
        self.dir.path().join(format!("n{i}{suffix}"))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..NODES {
            self.kill(i);
        }
    }
}

/// `$NATS_SERVER`, else `nats-server` if it is on `PATH`, else Debian's
/// `/usr/sbin/nats-server` if it exists, else `nats-server` (which fails).
fn nats_server_bin() -> OsString {
    if let Some(bin) = std::env::var_os("NATS_SERVER") {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("nats-server").is_file()));
    let debian = Path::new("/usr/sbin/nats-server");
    if !on_path && debian.is_file() { debian.into() } else { "nats-server".into() }
}

/// The last `lines` lines of the file at `path`.
fn tail(path: &Path, lines: usize) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].iter().map(|l| format!("{l}\n")).collect()
}
