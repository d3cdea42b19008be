//! A private PostgreSQL cluster for development and tests, started from the server
//! binaries installed on the machine, so that nothing depends on a server someone
//! started by hand.
//!
//! The cluster lives in `<data dir>/<name>/` and listens on a Unix socket there and on
//! a free loopback port. PostgreSQL refuses to run as root, so as root every server
//! command runs as the `postgres` system user, and when that user cannot reach the
//! data dir (a checkout under a root-only folder) the cluster moves to
//! `/var/tmp/nexus-<hash>/` and the data dir records where it went.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

const SYSTEM_USER: &str = "postgres";

/// Which cluster to use and how to tune it.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The project's data folder (`NEXUS_DATA_DIR`, `.nexus/` by default).
    pub data_dir: PathBuf,
    /// Sub-folder name, so development and tests can keep separate clusters.
    pub name: String,
    /// Trade durability for speed (fsync off): for throwaway test clusters only.
    pub ephemeral: bool,
}

impl ClusterOptions {
    #[must_use]
    pub fn dev(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            name: "pg".into(),
            ephemeral: false,
        }
    }

    /// The server runs in its own folder: every path handed to it must be absolute.
    fn absolute(&self) -> anyhow::Result<Self> {
        Ok(Self {
            data_dir: std::path::absolute(&self.data_dir)?,
            ..self.clone()
        })
    }

    #[must_use]
    pub fn test(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            name: "test-pg".into(),
            ephemeral: true,
        }
    }

    /// The benchmark's cluster: durable like the dev one (its figures are a server's
    /// that loses nothing it acknowledged), apart from it so the demo data stays.
    #[must_use]
    pub fn bench(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            name: "bench-pg".into(),
            ephemeral: false,
        }
    }
}

/// A running cluster and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningCluster {
    pub cluster_dir: PathBuf,
    pub port: u16,
    /// True when this call started the server, false when it was already running.
    pub started: bool,
}

impl RunningCluster {
    /// A connection URL for `database` over loopback TCP (trust auth, local only).
    #[must_use]
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SYSTEM_USER}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.cluster_dir
    }
}

/// Starts the cluster, creating it first if needed, or returns the one already running.
/// Blocking: call it from `spawn_blocking` or before the runtime starts.
///
/// # Errors
/// No PostgreSQL binaries, no `postgres` user when running as root, or `initdb` /
/// `pg_ctl` failing (their output is included).
pub fn ensure_running(opts: &ClusterOptions) -> anyhow::Result<RunningCluster> {
    let opts = &opts.absolute()?;
    let bin = find_bin_dir()?;
    fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating data dir {}", opts.data_dir.display()))?;
    let runner = Runner::detect()?;
    // Several processes (parallel test binaries, a dev server) may race to start it.
    let lock = lock_file(&opts.data_dir.join(format!("{}.lock", opts.name)))?;
    let cluster_dir = locate(opts, &runner)?;
    let pgdata = cluster_dir.join("data");

    if let Some(port) = running_port(&bin, &runner, &pgdata)? {
        drop(lock);
        return Ok(RunningCluster {
            cluster_dir,
            port,
            started: false,
        });
    }
    if !pgdata.join("PG_VERSION").exists() {
        init(&bin, &runner, &pgdata)?;
    }
    let mut last_err = None;
    for _ in 0..3 {
        let port = free_port()?;
        match start(&bin, &runner, &cluster_dir, port, opts.ephemeral) {
            Ok(()) => {
                drop(lock);
                return Ok(RunningCluster {
                    cluster_dir,
                    port,
                    started: true,
                });
            }
            // Another process may have taken the port between our probe and the bind.
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow!("PostgreSQL did not start")))
}

/// The running cluster, if any, without starting one.
///
/// # Errors
/// No binaries, or `pg_ctl status` failing unexpectedly.
pub fn status(opts: &ClusterOptions) -> anyhow::Result<Option<RunningCluster>> {
    let opts = &opts.absolute()?;
    let bin = find_bin_dir()?;
    let runner = Runner::detect()?;
    let Some(cluster_dir) = recorded_location(opts) else {
        return Ok(None);
    };
    let pgdata = cluster_dir.join("data");
    Ok(
        running_port(&bin, &runner, &pgdata)?.map(|port| RunningCluster {
            cluster_dir,
            port,
            started: false,
        }),
    )
}

/// Stops the cluster (fast shutdown). Returns whether one was running.
///
/// # Errors
/// `pg_ctl stop` failing.
pub fn stop(opts: &ClusterOptions) -> anyhow::Result<bool> {
    let opts = &opts.absolute()?;
    let bin = find_bin_dir()?;
    let runner = Runner::detect()?;
    let Some(cluster_dir) = recorded_location(opts) else {
        return Ok(false);
    };
    let pgdata = cluster_dir.join("data");
    if running_port(&bin, &runner, &pgdata)?.is_none() {
        return Ok(false);
    }
    let out = runner.run(
        &bin.join("pg_ctl"),
        &["stop", "-D", path_str(&pgdata)?, "-m", "fast", "-w"],
    )?;
    check(&out, "pg_ctl stop")?;
    Ok(true)
}

/// Finds `pg_ctl`, `initdb` and `postgres`: on PATH, then `pg_config --bindir`, then the
/// newest `/usr/lib/postgresql/*/bin`.
///
/// # Errors
/// One message saying what to install or set.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    find_bin_dir_in(
        std::env::var_os("PATH"),
        Some("pg_config"),
        Path::new("/usr/lib/postgresql"),
    )
}

fn find_bin_dir_in(
    path_var: Option<std::ffi::OsString>,
    pg_config: Option<&str>,
    versions_root: &Path,
) -> anyhow::Result<PathBuf> {
    let has_all = |dir: &Path| {
        ["pg_ctl", "initdb", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = path_var
        .as_ref()
        .and_then(|p| std::env::split_paths(p).find(|d| has_all(d)))
    {
        return Ok(dir);
    }
    if let Some(out) = pg_config.and_then(|p| Command::new(p).arg("--bindir").output().ok()) {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_all(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(versions_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e
                .file_name()
                .to_string_lossy()
                .split('.')
                .next()?
                .parse()
                .ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or_else(|| {
        anyhow!(
            "no DATABASE_URL is set and no PostgreSQL server binaries were found \
             (looked on PATH, in `pg_config --bindir` and /usr/lib/postgresql/*/bin): \
             install PostgreSQL (e.g. `apt-get install postgresql`) or set DATABASE_URL"
        )
    })
}

/// Runs server commands as ourselves, or as the `postgres` user when we are root.
struct Runner {
    as_user: Option<(u32, u32)>,
}

impl Runner {
    fn detect() -> anyhow::Result<Self> {
        let euid = fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(u32::MAX);
        if euid != 0 {
            return Ok(Self { as_user: None });
        }
        let id = |flag: &str| -> anyhow::Result<u32> {
            let out = Command::new("id")
                .args([flag, SYSTEM_USER])
                .output()
                .context("running id")?;
            if !out.status.success() {
                bail!(
                    "running as root, PostgreSQL needs an unprivileged system user `{SYSTEM_USER}` \
                     (create it with `useradd --system {SYSTEM_USER}`) or run NEXUS as another user"
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
        };
        Ok(Self {
            as_user: Some((id("-u")?, id("-g")?)),
        })
    }

    fn run(&self, program: &Path, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = if self.as_user.is_some() {
            let mut c = Command::new("runuser");
            c.args(["-u", SYSTEM_USER, "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        // pg_ctl start would otherwise keep our stdout open through the postmaster.
        cmd.args(args).stdin(std::process::Stdio::null());
        cmd.output()
            .with_context(|| format!("running {}", program.display()))
    }

    fn can_reach(&self, dir: &Path) -> bool {
        match self.as_user {
            None => true,
            Some(_) => Command::new("runuser")
                .args(["-u", SYSTEM_USER, "--", "test", "-w"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    fn hand_over(&self, dir: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.as_user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", dir.display()))?;
        }
        Ok(())
    }
}

fn pointer_file(opts: &ClusterOptions) -> PathBuf {
    opts.data_dir.join(format!("{}.location", opts.name))
}

fn recorded_location(opts: &ClusterOptions) -> Option<PathBuf> {
    let local = opts.data_dir.join(&opts.name);
    if local.join("data").exists() {
        return Some(local);
    }
    fs::read_to_string(pointer_file(opts))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
}

/// Picks (once) and prepares the folder the cluster lives in.
fn locate(opts: &ClusterOptions, runner: &Runner) -> anyhow::Result<PathBuf> {
    if let Some(dir) = recorded_location(opts).filter(|d| d.join("data").exists()) {
        return Ok(dir);
    }
    let local = opts.data_dir.join(&opts.name);
    fs::create_dir_all(&local)?;
    runner.hand_over(&local)?;
    let dir = if runner.can_reach(&local) {
        local
    } else {
        let _ = fs::remove_dir(&local);
        let canonical = fs::canonicalize(&opts.data_dir)?;
        let dir = PathBuf::from(format!(
            "/var/tmp/nexus-{:016x}",
            fnv(canonical.as_os_str().as_encoded_bytes())
        ))
        .join(&opts.name);
        fs::create_dir_all(&dir)?;
        if let Some(parent) = dir.parent() {
            runner.hand_over(parent)?;
        }
        runner.hand_over(&dir)?;
        fs::write(pointer_file(opts), dir.to_string_lossy().as_bytes())?;
        dir
    };
    Ok(dir)
}

fn init(bin: &Path, runner: &Runner, pgdata: &Path) -> anyhow::Result<()> {
    tracing::info!(pgdata = %pgdata.display(), "creating a private PostgreSQL cluster");
    let out = runner.run(
        &bin.join("initdb"),
        &[
            "-D",
            path_str(pgdata)?,
            "-U",
            SYSTEM_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
    )?;
    check(&out, "initdb")
}

fn start(
    bin: &Path,
    runner: &Runner,
    cluster_dir: &Path,
    port: u16,
    ephemeral: bool,
) -> anyhow::Result<()> {
    let pgdata = cluster_dir.join("data");
    let log = cluster_dir.join("postgres.log");
    let mut options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
        path_str(cluster_dir)?
    );
    if ephemeral {
        options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
    }
    tracing::info!(port, "starting the private PostgreSQL cluster");
    let out = runner.run(
        &bin.join("pg_ctl"),
        &[
            "start",
            "-D",
            path_str(&pgdata)?,
            "-l",
            path_str(&log)?,
            "-w",
            "-t",
            "60",
            "-o",
            &options,
        ],
    )?;
    check(&out, "pg_ctl start").with_context(|| {
        let tail = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        format!(
            "server log ({}): {}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )
    })
}

/// The port of the running postmaster, read from `postmaster.pid`, or `None`.
fn running_port(bin: &Path, runner: &Runner, pgdata: &Path) -> anyhow::Result<Option<u16>> {
    if !pgdata.join("postmaster.pid").exists() {
        return Ok(None);
    }
    let out = runner.run(&bin.join("pg_ctl"), &["status", "-D", path_str(pgdata)?])?;
    if !out.status.success() {
        return Ok(None);
    }
    // postmaster.pid: pid, data dir, start time, port, socket dir, listen address, ...
    let pid_file =
        fs::read_to_string(pgdata.join("postmaster.pid")).context("reading postmaster.pid")?;
    let port = pid_file
        .lines()
        .nth(3)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow!("postmaster.pid has no port line"))?;
    Ok(Some(port))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn lock_file(path: &Path) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // Bounded: a wedged holder must not hang every later start forever.
    for _ in 0..1200 {
        match file.try_lock() {
            Ok(()) => {
                let _ = writeln!(file, "{}", std::process::id());
                return Ok(file);
            }
            Err(fs::TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(100)),
            Err(fs::TryLockError::Error(err)) => return Err(err.into()),
        }
    }
    bail!("timed out waiting for the cluster lock {}", path.display())
}

fn check(out: &Output, what: &str) -> anyhow::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow!("path is not UTF-8: {}", path.display()))
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        for b in ["pg_ctl", "initdb", "postgres"] {
            fs::write(dir.join(b), "").unwrap();
        }
    }

    #[test]
    fn picks_the_newest_installed_version_and_explains_when_there_is_none() {
        let root = std::env::temp_dir().join(format!("nexus-bins-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let err = find_bin_dir_in(None, None, &root).unwrap_err().to_string();
        assert!(
            err.contains("install PostgreSQL") && err.contains("DATABASE_URL"),
            "{err}"
        );

        fake_bin(&root.join("9.6/bin"));
        fake_bin(&root.join("15/bin"));
        fake_bin(&root.join("13/bin"));
        assert_eq!(
            find_bin_dir_in(None, None, &root).unwrap(),
            root.join("15/bin")
        );

        // PATH wins over the versioned folders.
        let on_path = root.join("custom");
        fake_bin(&on_path);
        let path = std::env::join_paths([root.join("nothing-here"), on_path.clone()]).unwrap();
        assert_eq!(find_bin_dir_in(Some(path), None, &root).unwrap(), on_path);
        fs::remove_dir_all(&root).unwrap();
    }
}
