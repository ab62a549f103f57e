//! The relay's binary as a child process on a 127.0.0.1 ephemeral port:
//! started with JSON logs, its address read from the line that announces
//! it, every log line kept for the test to read, killed when dropped.

#![allow(dead_code)]

use serde_json::Value;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Longest a process may take to announce its address.
const START_PATIENCE: Duration = Duration::from_secs(30);

pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Value>>>,
}

impl Process {
    /// Starts the binary with `args` and waits for the log line whose
    /// message is `listening` (it carries the address). A process that
    /// does not get there fails the test with everything it logged.
    pub fn spawn(args: &[&str], listening: &'static str) -> Process {
        Process::spawn_with_env(args, &[], listening)
    }

    /// As [`Process::spawn`], with these environment variables set too.
    pub fn spawn_with_env(
        args: &[&str],
        vars: &[(&str, &str)],
        listening: &'static str,
    ) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
            .args(args)
            .envs(vars.iter().copied())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the relay's binary");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if v["fields"]["message"] == listening {
                    let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or("").to_owned());
                }
                lines.lock().expect("log").push(v);
            }
        });
        let addr = match rx.recv_timeout(START_PATIENCE) {
            Ok(a) => a.parse().expect("an address"),
            Err(_) => {
                let _ = child.kill();
                let log = log.lock().expect("log");
                panic!("{args:?} did not log {listening:?}: {log:?}");
            }
        };
        Process { child, addr, log }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first log line with this message.
    pub fn logged(&self, message: &str) -> Option<Value> {
        let log = self.log.lock().expect("log");
        log.iter()
            .find(|v| v["fields"]["message"] == message)
            .cloned()
    }

    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code and how long the exit took (at most
    /// `patience`, or the test fails).
    pub fn terminate(mut self, patience: Duration) -> (Option<i32>, Duration) {
        let pid = self.child.id().to_string();
        let sent = Instant::now();
        let killed = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(killed.is_ok_and(|s| s.success()), "kill -TERM");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status.code(), sent.elapsed());
            }
            if sent.elapsed() > patience {
                let _ = self.child.kill();
                panic!("the process did not exit within {patience:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
