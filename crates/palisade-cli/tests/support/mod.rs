//! Helpers for tests that run the real `palisade` binary.

#![allow(dead_code)] // each test file uses a different subset

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// GETs `url` (with a bearer `key`, if any) and parses the JSON body.
pub async fn get_json(http: &::reqwest::Client, url: &str, key: Option<&str>) -> serde_json::Value {
    let mut req = http.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// POSTs `body` as JSON to `url` (with a bearer `key`, if any) and parses the
/// JSON answer, whatever the status.
pub async fn post_json(
    http: &::reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &serde_json::Value,
) -> serde_json::Value {
    let mut req = http.post(url).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// A `palisade serve` child process, killed on drop.
pub struct Palisade {
    pub child: Child,
    pub port: u16,
}

impl Palisade {
    /// Starts `palisade serve` with `args` on a free port and waits until
    /// `/readyz` answers 200 (at most 30 s: a loaded 2-core CI machine
    /// starting several replicas at once is slow, a healthy start is not).
    pub fn serve(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
        cmd.arg("serve").arg("--listen").arg(&listen).args(args);
        cmd.env_remove("PALISADE_UPSTREAM")
            .env_remove("PALISADE_CONFIG");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("palisade binary starts");
        let mut me = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = me.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = me.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                panic!("palisade exited ({status}) before becoming ready: {stderr}");
            }
            if let Ok(resp) = reqwest::blocking_get(&me.url("/readyz")) {
                if resp == 200 {
                    return me;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("palisade did not become ready on {listen}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Palisade {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal blocking GET without pulling reqwest's blocking feature.
mod reqwest {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn blocking_get(url: &str) -> std::io::Result<u16> {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        buf.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status line"))
    }
}
