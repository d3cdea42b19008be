//! `nexus`: serve (default), migrate, openapi, db status|stop.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nexus_adapters_postgres::cluster::{self, ClusterOptions};
use nexus_adapters_postgres::migrate;
use nexus_app::config::Config;
use nexus_app::database::{self, DatabaseLocation};
use nexus_app::{Application, telemetry};

// Serving a page allocates and frees many small buffers (rows, values, JSON) on two
// worker threads: glibc's malloc took 12 % of the server's CPU time on the list bench.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "nexus", version, about = "NEXUS CRM API server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Only list pending migrations.
        #[arg(long)]
        status: bool,
    },
    /// Create demo data.
    Seed {
        /// The demo organization and its OWNER login (printed).
        #[arg(long)]
        demo: bool,
        /// Generate this many realistic contacts (needs --organization).
        #[arg(long, requires = "organization")]
        contacts: Option<i64>,
        /// Slug of an existing organization to receive the contacts; `nexus-demo`, the
        /// demo organization, is created (with its OWNER login, printed) when missing.
        #[arg(long)]
        organization: Option<String>,
    },
    /// Print the OpenAPI document (or write it to a file).
    Openapi {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Manage the private PostgreSQL cluster used when DATABASE_URL is unset.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
}

#[derive(Subcommand)]
enum DbAction {
    /// Say whether the private cluster runs, and where.
    Status,
    /// Stop the private cluster.
    Stop {
        /// Also stop the clusters that `cargo test` and the benchmark start.
        #[arg(long)]
        all: bool,
    },
}

/// The start-up banner goes to stdout, which a supervisor may close: a server must not
/// die of EPIPE, so write errors are ignored here (unlike `println!`, which panics).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("nexus: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("nexus: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nexus: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate { status } => {
            let (url, _) = database::resolve(&config).await?;
            if status {
                for name in migrate::pending(&url).await? {
                    println!("pending {name}");
                }
                return Ok(());
            }
            let mut config = config;
            config.auto_migrate = true;
            database::prepare(&url, &config).await?;
            println!("migrations up to date");
            Ok(())
        }
        Command::Seed {
            demo,
            contacts,
            organization,
        } => {
            if contacts.is_none() && !demo {
                anyhow::bail!(
                    "nothing to seed: pass --demo and/or --contacts N --organization SLUG"
                );
            }
            // The demo organization is made by registration (its OWNER, its pipeline),
            // also when it is only named as where contacts go.
            if demo || organization.as_deref() == Some(nexus_app::startup::DEMO_SLUG) {
                let mut config = config.clone();
                config.bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                let app = Application::build(&config).await?;
                let (email, password) = app.seed_demo(&config).await?;
                app.close().await;
                println!("demo organization ready: log in as {email} / {password}");
            }
            if let (Some(count), Some(slug)) = (contacts, organization.as_deref()) {
                let (url, _) = database::resolve(&config).await?;
                let mut prepare = config.clone();
                prepare.auto_migrate = true;
                database::prepare(&url, &prepare).await?;
                let started = std::time::Instant::now();
                nexus_adapters_postgres::seed::contacts_for_slug(&url, slug, count, |done| {
                    eprintln!(
                        "  {done} / {count} contacts ({:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                })
                .await?;
                let secs = started.elapsed().as_secs_f64();
                #[allow(clippy::cast_precision_loss)]
                let rate = count as f64 / secs.max(0.001);
                println!("seeded {count} contacts into {slug} in {secs:.1} s ({rate:.0} rows/s)");
            }
            Ok(())
        }
        Command::Openapi { output } => {
            let json = nexus_adapters_http::openapi::spec_json()?;
            match output {
                Some(path) => std::fs::write(path, json)?,
                None => print!("{json}"),
            }
            Ok(())
        }
        Command::Db { action } => {
            let opts = ClusterOptions::dev(config.data_dir.clone());
            match action {
                DbAction::Status => {
                    match tokio::task::spawn_blocking(move || cluster::status(&opts)).await?? {
                        Some(c) => println!(
                            "running: port {} on 127.0.0.1, socket dir {}, data {}",
                            c.port,
                            c.socket_dir().display(),
                            c.cluster_dir.join("data").display()
                        ),
                        None => println!("not running"),
                    }
                }
                DbAction::Stop { all } => {
                    let mut clusters = vec![opts];
                    if all {
                        clusters.push(ClusterOptions::test(config.data_dir.clone()));
                        clusters.push(ClusterOptions::bench(config.data_dir.clone()));
                    }
                    for opts in clusters {
                        let name = opts.name.clone();
                        let stopped =
                            tokio::task::spawn_blocking(move || cluster::stop(&opts)).await??;
                        println!(
                            "{name}: {}",
                            if stopped { "stopped" } else { "not running" }
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(&config).await?;
    let base = format!("http://{}:{}", config.bind.ip(), app.port());
    say!("NEXUS is listening on {base}");
    say!("  API:        {base}/api/v1");
    say!("  Swagger UI: {base}/docs/");
    say!("  OpenAPI:    {base}/api/v1/openapi.json");
    match &app.location {
        DatabaseLocation::External => say!("  Database:   DATABASE_URL"),
        DatabaseLocation::Private(c) => say!(
            "  Database:   private PostgreSQL, {} (127.0.0.1:{}, socket in {}); stop it with `nexus db stop`",
            c.cluster_dir.join("data").display(),
            c.port,
            c.socket_dir().display()
        ),
    }
    if matches!(app.location, DatabaseLocation::Private(_)) {
        let (email, password) = app.seed_demo(&config).await?;
        say!("  Demo login: {email} / {password}  (organization \"NEXUS Demo\", role OWNER)");
    }
    app.run_until_stopped().await?;
    Ok(())
}
