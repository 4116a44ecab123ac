//! A throwaway PostgreSQL server for tests: `initdb` into a temp dir, then
//! `postgres` on a free loopback port with its socket in the same dir.
//! Killed (and its files removed) on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! server runs as the `postgres` system user (created by Debian's
//! `postgresql` package), with the temp dir chowned to it.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "install them with `apt-get update && apt-get install -y postgresql` \
     (Debian/Ubuntu), or set PALISADE_PG_BIN to a directory holding initdb, postgres and pg_isready";

pub struct PgServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// The directory holding `initdb` and `postgres`: `$PALISADE_PG_BIN`, else
/// the newest `/usr/lib/postgresql/<version>/bin`. Panics with how to
/// install them when there is none: a missing server is a failure, not a skip.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PALISADE_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").exists(),
            "PALISADE_PG_BIN={} holds no initdb; {INSTALL_HINT}",
            dir.display()
        );
        return dir;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb); \
             the PostgreSQL ledger tests need a real server: {INSTALL_HINT}"
        ),
    }
}

/// `(uid, gid)` of the `postgres` user when we run as root (the server
/// refuses root), `None` otherwise.
fn run_as() -> Option<(u32, u32)> {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if uid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reads /etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .unwrap_or_else(|| {
            panic!("running as root but there is no `postgres` user to run the server as; {INSTALL_HINT}")
        });
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}

fn command(bin: &Path, name: &str, cwd: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bin.join(name));
    cmd.current_dir(cwd).env("LC_ALL", "C").env("LANG", "C");
    if let Some((uid, gid)) = owner {
        // std drops supplementary groups when it changes the uid.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl PgServer {
    /// Starts a fresh server and waits (at most 30 s) until it accepts
    /// connections.
    pub fn start() -> Self {
        let bin = bin_dir();
        let owner = run_as();
        let dir = tempfile::Builder::new()
            .prefix("palisade-pg-")
            .tempdir()
            .expect("creates a temp dir");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chowns the temp dir");
        }
        let data = dir.path().join("data");
        let init = command(&bin, "initdb", dir.path(), owner)
            .arg("-D")
            .arg(&data)
            // Trust on a loopback-only throwaway server; no fsync while
            // creating it (the running server does fsync).
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("runs initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("creates the log");
        let child = command(&bin, "postgres", dir.path(), owner)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=50",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starts postgres");
        // Owned from here on, so every path (panics included) stops it.
        let mut server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = command(&bin, "pg_isready", server.dir.path(), None)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "-q",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("postgres exited ({status}): {}", server.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres did not start on port {port}: {}", server.log());
    }

    /// A libpq-style connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The same as a URL, for `Ledger::open`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT) lets the server remove its shared memory;
        // SIGKILL only if it does not stop in time.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
