//! keel-server: the Keel broker. One pinned glommio executor per shard; every shard accepts
//! connections on the same port (SO_REUSEPORT) and owns a share of the partitions.

use anyhow::Context;
use clap::Parser;
use keel_server::config::{Args, Config};

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    exit_on_any_panic();
    let mut config = match Config::load(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("keel-server: invalid configuration: {e:#}");
            std::process::exit(2);
        }
    };
    let open_files = raise_open_files_limit();
    if let Err(message) = check_host() {
        eprintln!("keel-server: {message}");
        std::process::exit(1);
    }
    let fit = connections_that_fit(open_files);
    if config.connections_max > fit {
        tracing::info!(
            connections_max = config.connections_max,
            open_files,
            fit,
            "connections_max lowered to what the open-files limit holds: two descriptors a connection, a quarter of the limit kept for partition files"
        );
        config.connections_max = fit;
    }
    if let Err(e) = run(config) {
        eprintln!("keel-server: {e:#}");
        std::process::exit(1);
    }
}

/// A panic anywhere (a shard's executor, a blocking-pool thread) ends the process at once
/// with a non-zero status and one line naming the thread and the cause: a broker with a
/// dead shard would otherwise keep its port open while every request that needs that
/// shard hangs. A supervisor restarts it; recovery makes the restart safe.
fn exit_on_any_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed thread");
        let cause = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("keel-server: {name} failed: {cause}{at}; exiting with status {PANIC_EXIT_CODE}");
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

/// Exit status after a shard (or any thread) failed: EX_SOFTWARE.
const PANIC_EXIT_CODE: i32 = 70;

/// The client connections `open_files` descriptors hold: two each (reader and writer), a
/// quarter of the limit kept for partition files, listeners and the rest.
fn connections_that_fit(open_files: u64) -> usize {
    usize::try_from(open_files / 4 * 3 / 2)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Raises the soft limit of open files to the hard limit (every partition keeps its active
/// segment open); returns the limit then.
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Checks what glommio needs, so a refusal is one clear line with the fix, not a panic.
fn check_host() -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0
        && limit.rlim_cur < 512 * 1024
    {
        return Err(format!(
            "the locked-memory limit is {} KiB but io_uring (glommio) needs at least 512 KiB: raise it with `ulimit -l 65536` (or LimitMEMLOCK=64M under systemd) and start again",
            limit.rlim_cur / 1024
        ));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if text.trim() == "2" {
            return Err("io_uring is disabled on this host (kernel.io_uring_disabled=2): enable it with `sysctl -w kernel.io_uring_disabled=0`".into());
        }
    }
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes the 120-byte params struct we pass.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::ENOSYS) => "this kernel has no io_uring: Keel needs Linux 5.8 or newer".into(),
            Some(libc::EPERM) => "io_uring is not permitted here (kernel.io_uring_disabled=1 or a seccomp profile such as a container's default): allow io_uring for this process".into(),
            Some(libc::ENOMEM) => "io_uring could not allocate its rings: raise the locked-memory limit (`ulimit -l 65536`)".into(),
            _ => format!("io_uring is unavailable: {error}"),
        });
    }
    // SAFETY: closing the descriptor we just opened.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// Starts the broker, prints the ready line, and stops it on SIGTERM or SIGINT.
fn run(config: Config) -> anyhow::Result<()> {
    // Before any shard listens: a client may connect (and a supervisor send SIGTERM) as
    // soon as the first listener is open, before the ready line.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    let broker = keel_server::start(config)?;
    println!("{}", broker.ready_line());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    for signal in signals.forever() {
        if signal == signal_hook::consts::SIGHUP {
            match broker.reload_tls() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates read again"),
                Err(e) => tracing::warn!(
                    "SIGHUP: TLS certificates not reloaded, the ones in use stay: {e:#}"
                ),
            }
            continue;
        }
        tracing::info!(signal, "shutting down");
        break;
    }
    broker.stop()
}
