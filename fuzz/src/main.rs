//! `presenced-fuzz`: runs the fuzz targets for a number of iterations or seconds, from a fixed
//! seed, and exits 1 if any input broke an invariant (its bytes are saved under
//! `fuzz/crashes/`). docs/FUZZING.md has the commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use presenced_fuzz::runner::{self, Options};
use presenced_fuzz::targets::{self, TARGETS, Target};
use presenced_fuzz::{coverage, crate_dir};

#[derive(Parser)]
#[command(about = "Fuzz presenced's request decoder, inline splitter and snapshot loading")]
struct Args {
    /// decoder, inline, snapshot, snapshot-crc, or all.
    #[arg(long, default_value = "all")]
    target: String,
    /// Seed of the mutation sequence: the same seed and corpus give the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Inputs to run per target (the seeds included).
    #[arg(long, default_value_t = 100_000)]
    iterations: u64,
    /// Stop each target after this many seconds, even before its iterations are done.
    #[arg(long)]
    time_s: Option<f64>,
    /// Seed corpus directory (default: fuzz/corpus/<target's corpus>).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Where failing inputs are written.
    #[arg(long)]
    crashes: Option<PathBuf>,
    /// An input taking longer than this many milliseconds counts as a failure.
    #[arg(long, default_value_t = 5_000)]
    slow_ms: u64,
    /// Print a progress line every this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    progress_s: u64,
    /// Run one input file through the target (--target, or the target its name starts with)
    /// and report what it does, panics printed with their backtrace (RUST_BACKTRACE=1).
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Also print every distinct outcome with how many inputs ended that way.
    #[arg(long)]
    outcomes: bool,
    /// Write the snapshot seeds (built by real stores through the real save path) to
    /// fuzz/corpus/snapshot/ and exit.
    #[arg(long)]
    make_seeds: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.make_seeds {
        return make_seeds();
    }
    if let Some(file) = &args.replay {
        return replay(&args, file);
    }
    let chosen: Vec<&'static Target> = if args.target == "all" {
        TARGETS.iter().collect()
    } else {
        match targets::find(&args.target) {
            Some(target) => vec![target],
            None => return unknown_target(&args.target),
        }
    };
    if coverage::instrumented() {
        println!("coverage instrumentation: on");
    }
    let mut failed = false;
    for target in chosen {
        let options = Options {
            seed: args.seed,
            iterations: args.iterations,
            time_limit: args.time_s.map(Duration::from_secs_f64),
            corpus_dir: args
                .corpus
                .clone()
                .unwrap_or_else(|| crate_dir().join("corpus").join(target.corpus)),
            crash_dir: args
                .crashes
                .clone()
                .unwrap_or_else(|| crate_dir().join("crashes")),
            slow: Duration::from_millis(args.slow_ms),
            progress: (args.progress_s > 0).then(|| Duration::from_secs(args.progress_s)),
        };
        let report = runner::fuzz(target, &options);
        let secs = report.elapsed.as_secs_f64();
        println!(
            "{}: seed {}, {} iterations in {:.1} s ({:.0}/s), {} distinct outcomes, corpus {} -> {}{}, slowest input {:.1} ms",
            report.target,
            report.seed,
            report.iterations,
            secs,
            report.iterations as f64 / secs.max(1e-9),
            report.outcomes.len(),
            report.seeds,
            report.corpus_len,
            if report.edges > 0 {
                format!(
                    ", {} of {} coverage counters",
                    report.edges,
                    coverage::counters_total()
                )
            } else {
                String::new()
            },
            report.slowest.as_secs_f64() * 1e3,
        );
        if args.outcomes {
            for (label, count) in &report.outcomes {
                println!("  {count:>9}  {label}");
            }
        }
        if let Some(failure) = report.failure {
            failed = true;
            println!(
                "{}: FAILED at iteration {} (seed {}): {}\n  input saved to {}\n  replay: cargo run -p presenced-fuzz -- --target {} --replay {}",
                report.target,
                failure.iteration,
                report.seed,
                failure.message.trim_end(),
                failure.file.display(),
                report.target,
                failure.file.display()
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn unknown_target(name: &str) -> ExitCode {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    eprintln!("unknown target {name}: one of {}, or all", names.join(", "));
    ExitCode::FAILURE
}

fn replay(args: &Args, file: &PathBuf) -> ExitCode {
    let file_name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let target = if args.target != "all" {
        targets::find(&args.target)
    } else {
        // Longest name first: "snapshot-crc-…" is not a "snapshot" input.
        let mut by_length: Vec<&Target> = TARGETS.iter().collect();
        by_length.sort_by_key(|t| std::cmp::Reverse(t.name.len()));
        by_length
            .into_iter()
            .find(|t| file_name.starts_with(&format!("{}-", t.name)))
    };
    let Some(target) = target else {
        return unknown_target(&args.target);
    };
    let input = match std::fs::read(file) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    // Not through the runner: the panic prints with its location and backtrace.
    match std::panic::catch_unwind(|| (target.run)(&input)) {
        Ok(label) => {
            println!("{}: {} bytes: ok: {label}", target.name, input.len());
            ExitCode::SUCCESS
        }
        Err(_) => {
            println!(
                "{}: {} bytes: FAILED (panic above)",
                target.name,
                input.len()
            );
            ExitCode::FAILURE
        }
    }
}

fn make_seeds() -> ExitCode {
    let dir = crate_dir().join("corpus").join("snapshot");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, bytes) in targets::snapshot::seeds() {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, &bytes) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    ExitCode::SUCCESS
}
