//! A throwaway PostgreSQL server for tests: `initdb` into a temp dir, then
//! `postgres` on a free loopback port with its socket in the same dir.
//! It can be stopped and restarted on the same port with the same data (to
//! test what clients do when the database goes away and comes back), and is
//! stopped (and its files removed) on drop.
//!
//! The binaries are Debian's `postgresql` package (`scripts/test` installs
//! it): `$PALISADE_PG_BIN` if set, else the newest
//! `/usr/lib/postgresql/<version>/bin`, else a directory on `PATH` holding
//! `initdb` and `postgres` (other distributions). A missing server panics
//! with how to install it: a test that needs PostgreSQL fails, never skips.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! server runs as the `postgres` system user (created by the package), with
//! the temp dir chowned to it.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "install them with `apt-get update && apt-get install -y postgresql` \
     (Debian/Ubuntu; scripts/test does it), or set PALISADE_PG_BIN to a directory holding \
     initdb, postgres and pg_isready";

/// How long the server may take to accept connections after starting.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A real PostgreSQL server on 127.0.0.1, user `postgres` with trust
/// authentication, database `postgres`.
#[derive(Debug)]
pub struct PostgresServer {
    /// `None` while stopped.
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Creates a fresh cluster and starts the server; returns once it
    /// accepts connections (at most 30 s).
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
        let init = command(&bin, "initdb", dir.path(), owner)
            .arg("-D")
            .arg(dir.path().join("data"))
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
        // Owned from here on, so every path (panics included) stops it.
        let mut server = Self {
            child: None,
            port,
            bin,
            owner,
            dir,
        };
        server.run();
        server
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The same as a libpq-style connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The loopback port (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with a fast shutdown (clients are disconnected,
    /// committed data stays), killing it if that takes over 10 s. Does
    /// nothing when already stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT is PostgreSQL's fast shutdown: it lets the server remove
        // its shared memory, which SIGKILL would leave behind.
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the server (if running) and starts it again on the same port
    /// with the same data; returns once it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Starts `postgres` on the data dir and waits until it is ready.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("opens the server log");
        let child = command(&self.bin, "postgres", self.dir.path(), self.owner)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
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
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.ready() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("postgres exited ({status}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "postgres did not start on port {} within {START_TIMEOUT:?}: {}",
            self.port,
            self.log()
        );
    }

    fn ready(&self) -> bool {
        command(&self.bin, "pg_isready", self.dir.path(), None)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-q"])
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory holding `initdb`, `postgres` and `pg_isready` (see the
/// module doc for the search order).
fn bin_dir() -> PathBuf {
    let complete = |dir: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|b| dir.join(b).exists())
    };
    if let Some(dir) = std::env::var_os("PALISADE_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            complete(&dir),
            "PALISADE_PG_BIN={} lacks initdb, postgres or pg_isready; {INSTALL_HINT}",
            dir.display()
        );
        return dir;
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| complete(dir)))
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries not found (looked in $PALISADE_PG_BIN, \
                 /usr/lib/postgresql/*/bin and PATH); {INSTALL_HINT}"
            )
        })
}

/// `(uid, gid)` of the `postgres` user when we run as root (the server
/// refuses root), `None` otherwise.
fn run_as() -> Option<(u32, u32)> {
    let uid = std::fs::metadata("/proc/self").map_or(1, |m| m.uid());
    if uid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reads /etc/passwd");
    let fields: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .unwrap_or_else(|| {
            panic!(
                "running as root but there is no `postgres` user to run the server as; \
                 {INSTALL_HINT}"
            )
        })
        .split(':')
        .collect();
    let id = |i: usize| -> u32 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("malformed postgres entry in /etc/passwd: {fields:?}"))
    };
    Some((id(2), id(3)))
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
