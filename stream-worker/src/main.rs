//! `billiards-stream-worker`: parses the command line, loads the configuration and runs the
//! server until SIGTERM/SIGINT (or, under the supervisor, until the supervisor is gone).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use billiards_supervised::{fail, ParentWatch, PARENT_POLL};
use clap::Parser;
use config::exit_codes;
use tracing::{error, info};

/// MJPEG stream, APIs and dashboard of the billiards pipeline.
#[derive(Debug, Parser)]
#[command(name = "billiards-stream-worker", version)]
struct Args {
    /// Configuration file (default: $BILLIARDS_CONFIG, ./billiards.toml, built-in defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Started by the supervisor: exit when it goes away.
    #[arg(long)]
    supervised: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let root = billiards_supervised::init_logging("stream");
    let _entered = root.clone().entered();

    let loaded = match config::load(args.config.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(exit_codes::USAGE, &format!("invalid configuration: {e}")),
    };
    info!(config = %loaded.origin.display(), supervised = args.supervised, "starting");

    let thread_span = root.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stream-rt")
        // Every runtime thread runs inside the worker span, so every log line says
        // `worker=stream`; the span is entered for the thread's whole life on purpose.
        .on_thread_start(move || std::mem::forget(thread_span.clone().entered()))
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            return fail(
                exit_codes::FAILURE,
                &format!("cannot start the async runtime: {e}"),
            )
        }
    };
    let supervised = args.supervised;
    let result = runtime.block_on(billiards_stream_worker::run(
        loaded.config,
        shutdown_signal(supervised),
        |_| {},
    ));
    // Blocking encoder threads may still be finishing a frame; they hold nothing that
    // needs cleaning up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.exit_code(), &e.to_string()),
    }
}

/// Completes on SIGTERM or SIGINT, or, when supervised, when the parent process is gone (the
/// supervisor was killed: a worker must not outlive it by more than a second).
async fn shutdown_signal(supervised: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot listen for SIGTERM: {e}");
            return;
        }
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot listen for SIGINT: {e}");
            return;
        }
    };
    let watch = ParentWatch::new(supervised);
    let orphaned = async move {
        let Some(watch) = watch else {
            return std::future::pending::<()>().await;
        };
        let mut tick = tokio::time::interval(PARENT_POLL);
        loop {
            tick.tick().await;
            if watch.gone() {
                return;
            }
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
        _ = orphaned => info!("the supervisor is gone; stopping"),
    }
}
