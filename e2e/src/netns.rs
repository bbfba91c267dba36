//! A real black hole: a network namespace joined to this one by a veth pair, whose link can be
//! made to drop every packet: a `tc` queue that holds none (`tc qdisc add … root pfifo limit 0`
//! on both ends; this machine's kernel has no `netem` module, and `pfifo` with room for no
//! packet drops each one as `netem loss 100%` would). A peer inside it that vanishes
//! stops acknowledging anything, exactly as a phone that lost its network: no FIN, no RST, no
//! Close, only silence. Needs root (`ip netns`, `tc`); CI runs as root.
//!
//! The namespace, the veth pair and the qdiscs are removed in `Drop`, so a failing test leaves
//! nothing behind.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;

use anyhow::{bail, Context};
use nix::sched::{setns, CloneFlags};

/// A network namespace behind a veth pair: the host end has [`BlackHole::host_ip`], the
/// namespace's end [`BlackHole::peer_ip`] (a /30 of its own).
pub struct BlackHole {
    name: String,
    host_link: String,
    peer_link: String,
    host_ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
}

impl BlackHole {
    /// Creates the namespace `wsc<tag>` and its veth pair, with addresses in `10.231.<n>.0/30`
    /// (`n` from the process id and `tag`, so that parallel test processes do not collide).
    pub fn create(tag: u8) -> anyhow::Result<BlackHole> {
        let id = std::process::id() % 10_000;
        let subnet =
            u8::try_from((std::process::id() + u32::from(tag) * 7) % 64 * 4).expect("< 256");
        let hole = BlackHole {
            name: format!("wsc{id}n{tag}"),
            host_link: format!("wsc{id}h{tag}"),
            peer_link: format!("wsc{id}p{tag}"),
            host_ip: Ipv4Addr::new(10, 231, subnet, 1),
            peer_ip: Ipv4Addr::new(10, 231, subnet, 2),
        };
        // From here on, Drop removes whatever was made.
        ip(&["netns", "add", &hole.name])?;
        ip(&[
            "link",
            "add",
            &hole.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &hole.peer_link,
        ])?;
        ip(&["link", "set", &hole.peer_link, "netns", &hole.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", hole.host_ip),
            "dev",
            &hole.host_link,
        ])?;
        ip(&["link", "set", &hole.host_link, "up"])?;
        hole.in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", hole.peer_ip),
            "dev",
            &hole.peer_link,
        ])?;
        hole.in_ns(&["ip", "link", "set", &hole.peer_link, "up"])?;
        hole.in_ns(&["ip", "link", "set", "lo", "up"])?;
        Ok(hole)
    }

    /// The host end's address: a server listening on it is reachable from the namespace.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The namespace end's address: where the vanished peers' connections come from.
    pub fn peer_ip(&self) -> Ipv4Addr {
        self.peer_ip
    }

    /// Opens `count` TCP connections to `addr` from inside the namespace. The sockets belong to
    /// the namespace for life, whichever thread uses them afterwards.
    pub fn connect(&self, addr: SocketAddr, count: usize) -> anyhow::Result<Vec<TcpStream>> {
        let netns = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || -> anyhow::Result<Vec<TcpStream>> {
            let ns = File::open(&netns).with_context(|| format!("open {netns}"))?;
            // Only this thread moves into the namespace; it ends right after.
            setns(&ns, CloneFlags::CLONE_NEWNET).context("setns into the black hole")?;
            (0..count)
                .map(|_| {
                    let stream = TcpStream::connect(addr)
                        .with_context(|| format!("connect to {addr} from the namespace"))?;
                    stream.set_nonblocking(true)?;
                    Ok(stream)
                })
                .collect()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the connecting thread panicked"))?
    }

    /// Drops every packet on both ends of the link from now on: the peers vanish.
    pub fn cut(&self) -> anyhow::Result<()> {
        const LOSS: [&str; 4] = ["root", "pfifo", "limit", "0"];
        run(&[&["tc", "qdisc", "add", "dev", &self.host_link][..], &LOSS].concat())?;
        self.in_ns(&[&["tc", "qdisc", "add", "dev", &self.peer_link][..], &LOSS].concat())
    }

    /// Undoes [`BlackHole::cut`]: packets pass again.
    pub fn heal(&self) -> anyhow::Result<()> {
        run(&["tc", "qdisc", "del", "dev", &self.host_link, "root"])?;
        self.in_ns(&["tc", "qdisc", "del", "dev", &self.peer_link, "root"])
    }

    /// Runs `args` inside the namespace.
    fn in_ns(&self, args: &[&str]) -> anyhow::Result<()> {
        run(&[&["ip", "netns", "exec", &self.name][..], args].concat())
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair; the host end is
        // deleted too in case the move into the namespace never happened.
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Runs `ip ARGS`.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(&[&["ip"][..], args].concat())
}

/// Runs a command to its end; an error carries its stderr.
fn run(command: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(command[0])
        .args(&command[1..])
        .output()
        .with_context(|| format!("run {command:?} (needs root)"))?;
    if !output.status.success() {
        bail!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
