//! A private PostgreSQL cluster for one test binary: its own data directory
//! in a temporary folder owned by the `postgres` user, 127.0.0.1 on a free
//! port, the unix socket in that folder, trust auth. Stopped (fast) and
//! removed on drop. Tests that need it fail, saying how to install it, when
//! the PostgreSQL binaries are missing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

/// Where `pg_ctl` lives: `PG_BIN`, else the newest /usr/lib/postgresql/N/bin.
fn find_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("pg_ctl").exists() && b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed, and these tests need it: \
             `apt-get install -y postgresql` (Debian), or set PG_BIN to the \
             directory holding initdb and pg_ctl"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool as the `postgres` user (it refuses root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn run(mut c: Command, what: &str) {
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    /// Creates and starts a cluster (about a second).
    pub fn start() -> PgCluster {
        let bin = find_bin();
        let dir =
            std::env::temp_dir().join(format!("relay-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:").arg(&dir);
                    c
                },
                "chown of the cluster directory",
            );
        }
        let mut init = as_postgres(&bin.join("initdb"));
        init.arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        run(init, "initdb");
        let cluster = PgCluster {
            bin,
            dir,
            port: free_port(),
        };
        cluster.resume();
        cluster
    }

    /// `postgres://…` for `--store`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast: open sessions are ended), keeping the data.
    pub fn pause(&self) {
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]);
        run(c, "pg_ctl stop");
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=50",
            self.port,
            self.dir.display()
        );
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-o", &options, "start"]);
        run(c, "pg_ctl start");
    }

    /// Runs SQL through psql on the default database; its output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_on(&self.url(), sql)
    }

    /// Runs SQL through psql on the database at `url`; its output.
    pub fn psql_on(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-XAtq", url, "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = c.status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
