//! A private Kafka broker for a test that kills or restarts it: the shared
//! test broker must never go down under the other tests.
//!
//! Started with the project's own `deploy/kafka/kafka-local` on free ports,
//! with its own data and run folders (removed on drop, the broker stopped;
//! kept when the test panics, for its logs). Plain, or with a SASL_PLAINTEXT
//! listener (`KAFKA_SASL=plain`, the users of `deploy/kafka/sasl.properties`).
//! Starting fails loudly: a test that needs it never skips.
//!
//! [`PrivateCluster`] is the same for three brokers (`KAFKA_NODES=3`): one
//! KRaft quorum of three combined nodes, RF 3 and min ISR 2 by default, any
//! one node to SIGKILL and restart alone.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A broker of this test's own.
#[derive(Debug)]
pub struct PrivateBroker {
    port: u16,
    dir: PathBuf,
    sasl: bool,
}

fn kafka_local() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kafka/kafka-local")
}

/// Two consecutive free loopback ports (client, controller).
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
        let p = l.local_addr()?.port();
        drop(l);
        if p < 65_000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return Ok(p);
        }
    }
    bail!("no two consecutive free loopback ports found")
}

impl PrivateBroker {
    /// Starts a fresh single-node broker and waits until it answers.
    ///
    /// # Errors
    /// kafka-local failed (its output is in the error).
    pub fn start() -> Result<Self> {
        Self::launch(false)
    }

    /// Like [`PrivateBroker::start`], with a SASL_PLAINTEXT (PLAIN) listener.
    ///
    /// # Errors
    /// kafka-local failed (its output is in the error).
    pub fn start_sasl() -> Result<Self> {
        Self::launch(true)
    }

    fn launch(sasl: bool) -> Result<Self> {
        let port = free_port_pair()?;
        let dir = std::env::temp_dir().join(crate::unique("cpn-broker"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let b = PrivateBroker { port, dir, sasl };
        b.run("start")?;
        Ok(b)
    }

    /// Its bootstrap address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn command(&self, verb: &str) -> Command {
        let mut c = Command::new(kafka_local());
        c.arg(verb)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.port + 1).to_string())
            // A small heap: this machine is shared, and the tests are small.
            .env("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m")
            .env("KAFKA_START_TIMEOUT", "180")
            .env("CPN_KAFKA_DATA", self.dir.join("data"))
            .env("CPN_KAFKA_RUN", self.dir.join("run"))
            .stdin(std::process::Stdio::null());
        if self.sasl {
            c.env("KAFKA_SASL", "plain");
        }
        c
    }

    fn run(&self, verb: &str) -> Result<()> {
        let out = self
            .command(verb)
            .output()
            .with_context(|| format!("running kafka-local {verb}"))?;
        if !out.status.success() {
            bail!(
                "{}kafka-local {verb} on port {} failed ({}):\n{}{}",
                if self.sasl { "KAFKA_SASL=plain " } else { "" },
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// SIGKILLs the broker (no clean shutdown) and waits until it is gone.
    ///
    /// # Errors
    /// It was not running.
    pub fn kill(&self) -> Result<()> {
        let pid_file = self
            .dir
            .join("run")
            .join(format!("kafka-{}.pid", self.port));
        let pid = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?;
        let pid = pid.trim().to_owned();
        let st = Command::new("kill").args(["-KILL", &pid]).status()?;
        anyhow::ensure!(st.success(), "kill -KILL {pid} failed");
        for _ in 0..100 {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("broker {pid} still alive 10 s after SIGKILL")
    }

    /// Starts it again on the same data.
    ///
    /// # Errors
    /// kafka-local failed.
    pub fn restart(&self) -> Result<()> {
        self.run("start")
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        match self.command("stop").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "stopping the broker on port {} failed: {}{}",
                self.port,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("stopping the broker on port {}: {e}", self.port),
        }
        if std::thread::panicking() {
            eprintln!("broker logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `n` consecutive free loopback ports, below the kernel's ephemeral range:
/// a port bound and released from that range can be taken by any outgoing
/// connection (the nodes' own to each other's controllers, seen) before the
/// broker binds it.
fn free_ports(n: u16) -> Result<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (from, to) = (10_000u16, low.saturating_sub(n).max(10_001));
    for _ in 0..200 {
        // uuid v4 is the crate's source of randomness here
        let r = uuid::Uuid::new_v4().as_u128() % u128::from(to - from);
        let p = from + u16::try_from(r).unwrap_or(0);
        if (0..n).all(|k| std::net::TcpListener::bind(("127.0.0.1", p + k)).is_ok()) {
            return Ok(p);
        }
    }
    bail!("no {n} consecutive free loopback ports found in {from}..{to}")
}

/// Three brokers of this test's own: `deploy/kafka/kafka-local` with
/// `KAFKA_NODES=3`. Node k (1..=3) listens on `port + k - 1`, its controller
/// on `port + 3 + k - 1`. Dropped: all stopped, data removed (kept when the
/// test panics, for the logs).
#[derive(Debug)]
pub struct PrivateCluster {
    port: u16,
    dir: PathBuf,
}

impl PrivateCluster {
    /// Nodes in the cluster.
    pub const NODES: u16 = 3;

    /// Starts a fresh three-node cluster and waits until every node lists
    /// all three as live brokers.
    ///
    /// # Errors
    /// kafka-local failed (its output is in the error).
    pub fn start() -> Result<Self> {
        let port = free_ports(2 * Self::NODES)?;
        let dir = std::env::temp_dir().join(crate::unique("cpn-cluster"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let c = PrivateCluster { port, dir };
        c.run("start", None)?;
        Ok(c)
    }

    /// The bootstrap list of all three nodes.
    pub fn bootstrap(&self) -> String {
        (0..Self::NODES)
            .map(|k| format!("127.0.0.1:{}", self.port + k))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node_port(&self, node: u16) -> Result<u16> {
        anyhow::ensure!(
            (1..=Self::NODES).contains(&node),
            "node {node}: the cluster has nodes 1 to {}",
            Self::NODES
        );
        Ok(self.port + node - 1)
    }

    fn command(&self, verb: &str, node: Option<u16>) -> Command {
        let mut c = Command::new(kafka_local());
        c.arg(verb)
            .env("KAFKA_NODES", Self::NODES.to_string())
            .env("KAFKA_PORT", self.port.to_string())
            .env(
                "KAFKA_CONTROLLER_PORT",
                (self.port + Self::NODES).to_string(),
            )
            .env("KAFKA_HEAP_OPTS", "-Xms512m -Xmx512m")
            .env("KAFKA_START_TIMEOUT", "180")
            .env("KAFKA_STOP_TIMEOUT", "20")
            .env("CPN_KAFKA_DATA", self.dir.join("data"))
            .env("CPN_KAFKA_RUN", self.dir.join("run"))
            .env_remove("KAFKA_NODE")
            .env_remove("KAFKA_SASL")
            .stdin(std::process::Stdio::null());
        if let Some(n) = node {
            c.env("KAFKA_NODE", n.to_string());
        }
        c
    }

    fn run(&self, verb: &str, node: Option<u16>) -> Result<()> {
        let out = self
            .command(verb, node)
            .output()
            .with_context(|| format!("running kafka-local {verb}"))?;
        if !out.status.success() {
            bail!(
                "KAFKA_NODES=3 {}kafka-local {verb} on ports {}.. failed ({}):\n{}{}",
                node.map(|n| format!("KAFKA_NODE={n} ")).unwrap_or_default(),
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// SIGKILLs node `node` (1..=3, no clean shutdown) and waits until it
    /// is gone.
    ///
    /// # Errors
    /// No such node, or it was not running.
    pub fn kill(&self, node: u16) -> Result<()> {
        let pid_file = self
            .dir
            .join("run")
            .join(format!("kafka-{}.pid", self.node_port(node)?));
        let pid = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?;
        let pid = pid.trim().to_owned();
        let st = Command::new("kill").args(["-KILL", &pid]).status()?;
        anyhow::ensure!(st.success(), "kill -KILL {pid} (node {node}) failed");
        for _ in 0..100 {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("node {node} (pid {pid}) still alive 10 s after SIGKILL")
    }

    /// Starts node `node` again, alone, on its data; returns once it
    /// serves and every node is live again.
    ///
    /// # Errors
    /// No such node, or kafka-local failed.
    pub fn restart(&self, node: u16) -> Result<()> {
        self.node_port(node)?;
        self.run("start", Some(node))
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        match self.command("stop", None).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "stopping the cluster on ports {}.. failed: {}{}",
                self.port,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("stopping the cluster on ports {}..: {e}", self.port),
        }
        if std::thread::panicking() {
            eprintln!("cluster logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
