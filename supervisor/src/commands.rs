//! The five commands of `billiards-supervisor`, as functions the thin `main` calls.
//! Each returns `Ok(())` for exit code 0; errors map to codes with [`crate::exit_code`].

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use config::Loaded;

use crate::control::{self, Request, Response};
use crate::status::{Status, WorkerState};
use crate::worker::WorkerName;
use crate::{table, Shutdown};

/// How long the client waits for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `start`: runs the tree in the foreground.
pub fn start(loaded: Loaded) -> anyhow::Result<()> {
    // One thread: workers are spawned from it, and it lives as long as the supervisor, so the
    // workers' parent-death signal fires only when the supervisor dies.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    rt.block_on(async {
        let shutdown = Shutdown::from_signals().context("cannot install signal handlers")?;
        crate::run(loaded, shutdown).await
    })
}

fn socket_of(loaded: &Loaded) -> std::path::PathBuf {
    loaded.config.control_socket_path()
}

fn ask(socket: &Path, req: &Request) -> anyhow::Result<Response> {
    match control::request(socket, req, REQUEST_TIMEOUT)? {
        Response::Error(e) => anyhow::bail!("the supervisor refused: {e}"),
        r => Ok(r),
    }
}

/// Fetches the status from the supervisor on `socket`.
pub fn fetch_status(socket: &Path) -> anyhow::Result<Status> {
    match ask(socket, &Request::Status)? {
        Response::Status(s) => Ok(*s),
        other => anyhow::bail!("unexpected answer to status: {other:?}"),
    }
}

/// `status [--json]`.
pub fn status(loaded: &Loaded, json: bool) -> anyhow::Result<()> {
    let status = fetch_status(&socket_of(loaded))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", table::render(&status, unix_now()));
    }
    Ok(())
}

/// `stop`: asks for a clean stop and waits until the supervisor has exited.
pub fn stop(loaded: &Loaded) -> anyhow::Result<()> {
    let socket = socket_of(loaded);
    let pid = match ask(&socket, &Request::Ping)? {
        Response::Pong { pid } => Some(pid),
        _ => None,
    };
    // Each worker may take its grace and the stop is ordered (readers, then video), so wait
    // for two graces plus the SIGKILL rounds.
    let grace = loaded.config.supervisor.shutdown_timeout_sec;
    let timeout = Duration::from_secs_f64(grace * 2.0 + 10.0);
    match control::stop_and_wait(&socket, timeout)? {
        Response::Ok => {}
        Response::Error(e) => anyhow::bail!("the supervisor refused to stop: {e}"),
        other => anyhow::bail!("unexpected answer to stop: {other:?}"),
    }
    match pid {
        Some(pid) => println!("billiards-supervisor (pid {pid}) stopped"),
        None => println!("billiards-supervisor stopped"),
    }
    Ok(())
}

/// `restart WORKER`: restarts one worker and waits until it runs again (or gives up).
pub fn restart(loaded: &Loaded, worker: WorkerName) -> anyhow::Result<()> {
    let socket = socket_of(loaded);
    let before = fetch_status(&socket)?;
    let Some(old) = before.worker(worker.as_str()) else {
        // The status lists only the workers this config runs.
        return Err(crate::UsageError(format!(
            "the {worker} worker is not part of this tree ({} = false in {}); nothing to restart",
            worker.enabled_key(),
            before.supervisor.config_path
        ))
        .into());
    };
    let old_pid = old.pid;
    ask(&socket, &Request::Restart { worker })?;
    let c = &loaded.config;
    let limit = c.supervisor.shutdown_timeout_sec
        + c.video.attach_timeout_sec
        + c.watchdog.frame_timeout_sec
        + 5.0;
    let deadline = Instant::now() + Duration::from_secs_f64(limit);
    loop {
        let now = fetch_status(&socket)?;
        if let Some(w) = now.worker(worker.as_str()) {
            match (w.state, w.pid) {
                (WorkerState::Running, Some(pid)) if Some(pid) != old_pid => {
                    println!("{worker} worker restarted (pid {pid})");
                    return Ok(());
                }
                (WorkerState::Failed, _) => {
                    // The restart itself was done (exit 0, as the SPEC says); that the worker
                    // failed again is the state of the tree, shown like `status` would.
                    let why = w
                        .last_exit
                        .as_ref()
                        .map_or("no reason recorded".to_string(), |e| e.describe());
                    println!("{worker} worker restarted, but it failed again: {why}");
                    return Ok(());
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                println!("{worker} worker restart requested; it is {} (see `billiards-supervisor status`)", w.state);
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `check-config`: prints the effective config as TOML.
pub fn check_config(loaded: &Loaded) -> anyhow::Result<()> {
    println!("# effective configuration from {}", loaded.origin.display());
    print!("{}", loaded.config.to_toml());
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
