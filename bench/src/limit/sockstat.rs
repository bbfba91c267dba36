//! The kernel's memory for sockets: TCP buffer pages from `/proc/net/sockstat`, and the slab
//! (sockets, inodes, files, epoll entries) from `/proc/meminfo`.

use super::*;

/// The TCP line of `/proc/net/sockstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcpSockstat {
    /// Sockets in use (not listening ones in TIME_WAIT).
    pub inuse: u64,
    /// Pages of socket buffer memory (`mem`).
    pub mem_pages: u64,
}

/// Parses the `TCP:` line of `/proc/net/sockstat`
/// (`TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 3`).
pub fn sockstat(text: &str) -> Option<TcpSockstat> {
    let line = text.lines().find_map(|line| line.strip_prefix("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| {
        words
            .chunks(2)
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair.get(1)?.parse().ok())
    };
    Some(TcpSockstat {
        inuse: field("inuse")?,
        mem_pages: field("mem")?,
    })
}

/// Reads `/proc/net/sockstat` (this network namespace: on loopback it counts both ends).
pub(super) fn read_sockstat() -> anyhow::Result<TcpSockstat> {
    let text = std::fs::read_to_string("/proc/net/sockstat").context("read /proc/net/sockstat")?;
    sockstat(&text).context("no TCP line in /proc/net/sockstat")
}

/// The kernel's slab memory (`Slab:` in `/proc/meminfo`), KiB: machine-wide, so a connection
/// over loopback adds both of its ends (socket, inode, file and epoll entry on each side).
pub(super) fn read_slab_kib() -> anyhow::Result<u64> {
    use procfs::Current;
    let meminfo = procfs::Meminfo::current().context("read /proc/meminfo")?;
    Ok(meminfo.slab / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sockstat() {
        let text = "sockets: used 9\n\
                    TCP: inuse 1 orphan 0 tw 1853 alloc 1 mem 12\n\
                    UDP: inuse 0 mem 0\n";
        assert_eq!(
            sockstat(text),
            Some(TcpSockstat {
                inuse: 1,
                mem_pages: 12
            })
        );
        assert_eq!(sockstat("UDP: inuse 0 mem 0\n"), None);
        assert_eq!(sockstat("TCP: inuse 1 orphan 0\n"), None);
        assert!(read_sockstat().is_ok(), "this machine's /proc/net/sockstat");
        assert!(read_slab_kib().unwrap() > 0, "this machine's /proc/meminfo");
    }
}
