//! The `presenced` binary: config file and flags -> Config -> server::run. Nothing else lives here.

use clap::Parser;
use presenced::config::{Args, Config, RuntimeKind};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // `presenced /path/presenced.conf [flags]`: the file's lines first, the flags after them.
    let (argv, config_file) =
        match presenced::config_file::expand_argv(std::env::args_os().collect()) {
            Ok(expanded) => expanded,
            Err(message) => {
                eprintln!("presenced: {message}");
                return std::process::ExitCode::from(2);
            }
        };
    let args = Args::parse_from(argv);
    if let Some(file) = &args.check_snapshot {
        return presenced::snapshot::check_report(file);
    }
    let config = match Config::from_args(args) {
        Ok(config) => Config {
            config_file,
            ..config
        },
        Err(message) => {
            eprintln!("presenced: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The tick clock calibrates with a short sleep: here, before any runtime thread exists.
    presenced::clock::calibrate_ticks();
    // Per-core: this thread's runtime is the first core's; server::run starts the others.
    let runtime = match config.runtime {
        RuntimeKind::Multi => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.thread_count)
            .enable_all()
            .build(),
        RuntimeKind::PerCore => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("presenced: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(presenced::server::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "presenced failed");
            std::process::ExitCode::FAILURE
        }
    }
}
