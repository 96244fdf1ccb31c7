//! `billiards-supervisor`: parses the command line, loads the config and calls the command.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use billiards_supervisor::{commands, exit_code, WorkerName};
use clap::{Parser, Subcommand};

/// Starts, watches, restarts, stops and reports the billiards worker tree.
#[derive(Debug, Parser)]
#[command(name = "billiards-supervisor", version, about)]
struct Cli {
    /// Config file (else $BILLIARDS_CONFIG, else ./billiards.toml, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the tree in the foreground until SIGTERM/SIGINT or `stop`.
    Start,
    /// Show the running tree (a table, or the status JSON with --json).
    Status {
        /// Print the status JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Stop the running tree cleanly and wait for it.
    Stop,
    /// Restart one worker: video, vision or stream (also revives a failed one).
    Restart {
        /// video, vision or stream.
        #[arg(value_parser = parse_worker)]
        worker: WorkerName,
    },
    /// Validate the config and print the effective config as TOML.
    CheckConfig,
}

fn parse_worker(s: &str) -> Result<WorkerName, String> {
    s.parse()
        .map_err(|e: billiards_supervisor::worker::UnknownWorker| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let span = tracing::info_span!("supervisor", worker = "supervisor");
    let _entered = span.enter();
    let result = config::load(cli.config.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|loaded| match cli.command {
            Command::Start => commands::start(loaded),
            Command::Status { json } => commands::status(&loaded, json),
            Command::Stop => commands::stop(&loaded),
            Command::Restart { worker } => commands::restart(&loaded, worker),
            Command::CheckConfig => commands::check_config(&loaded),
        });
    // The last log lines (e.g. "stopped cleanly") are still queued for the writer thread.
    billiards_supervisor::output::flush(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("billiards-supervisor: {e:#}");
            ExitCode::from(exit_code(&e) as u8)
        }
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Queued to a writer thread, never a blocking write on the event loop: a stalled
        // reader of our stderr must not stall the watchdog or the control socket.
        .with_writer(billiards_supervisor::output::StderrLog)
        // By default a failed log write is reported with eprintln!, which panics when stderr
        // is a closed pipe (`... 2>&1 | head`): a lost log line must not end the process.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
