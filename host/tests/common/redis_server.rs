//! A real `redis-server` for a test: installed by `scripts/ensure-redis`
//! when missing, started on a free loopback port without persistence,
//! killed when dropped. Included with `#[path]` by the tests that need it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The redis-server binary, or why there is none (asked once per test
/// binary: concurrent tests must not race apt-get).
fn binary() -> Result<String, String> {
    static BINARY: OnceLock<Result<String, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ensure-redis");
            let out = Command::new(script)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run {script}: {e}"))?;
            match out.status.code() {
                Some(0) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
                Some(3) => Err("redis-server is not installed and installing it needs root".into()),
                _ => panic!("{script} failed: {}", out.status),
            }
        })
        .clone()
}

pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// A fresh server, or `None` (after saying why) when redis-server
    /// cannot be installed on this machine. Returns once the server says
    /// it accepts connections.
    pub fn start() -> Option<RedisServer> {
        let binary = match binary() {
            Ok(b) => b,
            Err(why) => {
                eprintln!("SKIPPED: this test needs a real Redis: {why}");
                return None;
            }
        };
        // A free port can be taken between asking and binding: try again.
        for _ in 0..5 {
            if let Some(server) = Self::start_on(&binary, free_port()) {
                return Some(server);
            }
        }
        panic!("redis-server did not start");
    }

    /// A server on `port` (the port of one that was killed: a restart).
    pub fn start_on(binary: &str, port: u16) -> Option<RedisServer> {
        let mut child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        if !ready {
            // It exited (the port was taken).
            let _ = child.wait();
            return None;
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Some(RedisServer { child, port })
    }

    /// The same server again on the same port, empty (after `kill`).
    pub fn restart(&mut self) {
        let binary = binary().unwrap();
        let again = Self::start_on(&binary, self.port).expect("restart on the same port");
        let old = std::mem::replace(self, again);
        drop(old);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is
    /// answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server (its data is gone); `restart` brings one back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
