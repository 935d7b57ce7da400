//! The fuzz loop: run every seed, then mutate corpus entries and run the target on each,
//! catching panics so that the input that caused one is saved with the seed and iteration
//! that produced it. An input whose outcome label was not seen before joins the corpus (a
//! coarse substitute for coverage feedback), as does one that reached new code when the binary
//! was built with coverage instrumentation (`coverage`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::mutate::Mutator;
use crate::rng::{Rng, hash};
use crate::targets::Target;
use crate::{abort_guard, coverage};

/// Corpus entries kept in memory at most; past it new finds replace random entries.
const CORPUS_MAX: usize = 4096;

pub struct Options {
    pub seed: u64,
    pub iterations: u64,
    pub time_limit: Option<Duration>,
    pub corpus_dir: PathBuf,
    pub crash_dir: PathBuf,
    /// An input that runs longer than this is a finding too (quadratic behaviour).
    pub slow: Duration,
    /// Print a progress line to stderr this often (never when `None`).
    pub progress: Option<Duration>,
}

#[derive(Debug)]
pub struct Failure {
    pub iteration: u64,
    pub message: String,
    pub file: PathBuf,
}

#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    pub seed: u64,
    pub iterations: u64,
    pub elapsed: Duration,
    /// Each outcome label with how many inputs ended that way.
    pub outcomes: BTreeMap<String, u64>,
    pub seeds: usize,
    pub corpus_len: usize,
    /// Coverage counters hit (0 without instrumentation).
    pub edges: usize,
    pub slowest: Duration,
    pub failure: Option<Failure>,
}

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// While a target runs under the fuzzer its panics are recorded, not printed: the runner
/// reports them once with the saved input. Elsewhere (tests, replay) they print as usual.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs `target` once on `input`: its label, or the panic's message.
pub fn run_once(target: &Target, input: &[u8]) -> Result<String, String> {
    install_panic_hook();
    CAPTURING.with(|c| c.set(true));
    abort_guard::arm(input);
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    abort_guard::disarm();
    CAPTURING.with(|c| c.set(false));
    result.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panic without a message".to_string())
    })
}

/// The seed corpus of a target: every file of `dir`, by name.
pub fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    paths.iter().filter_map(|p| fs::read(p).ok()).collect()
}

pub fn save_input(dir: &Path, target: &str, input: &[u8]) -> PathBuf {
    let _ = fs::create_dir_all(dir);
    let path = dir.join(format!("{target}-{:016x}.bin", hash(input)));
    if let Err(e) = fs::write(&path, input) {
        eprintln!("cannot save {}: {e}", path.display());
    }
    path
}

pub fn fuzz(target: &'static Target, options: &Options) -> Report {
    let started = Instant::now();
    let _ = fs::create_dir_all(&options.crash_dir);
    abort_guard::prepare(&options.crash_dir.join(format!("{}-abort.bin", target.name)));
    let mutator = Mutator {
        max_len: target.max_len,
        dictionary: target.dictionary,
    };
    let mut rng = Rng::new(options.seed ^ hash(target.name.as_bytes()));
    let mut corpus = load_corpus(&options.corpus_dir);
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let seeds = corpus.len();
    let mut report = Report {
        target: target.name,
        seed: options.seed,
        iterations: 0,
        elapsed: Duration::ZERO,
        outcomes: BTreeMap::new(),
        seeds,
        corpus_len: seeds,
        edges: 0,
        slowest: Duration::ZERO,
        failure: None,
    };
    let mut last_progress = Instant::now();
    coverage::forget();
    let mut input = Vec::new();
    while report.iterations < options.iterations {
        if options
            .time_limit
            .is_some_and(|limit| started.elapsed() >= limit)
        {
            break;
        }
        let iteration = report.iterations;
        input.clear();
        if (iteration as usize) < seeds {
            input.extend_from_slice(&corpus[iteration as usize]);
        } else {
            input.extend_from_slice(&corpus[rng.below(corpus.len())]);
            (target.mutate)(&mutator, &mut rng, &mut input, &corpus);
        }
        // Counters the mutator itself bumped are not the target's coverage.
        coverage::clear();
        let clock = Instant::now();
        let result = run_once(target, &input);
        let took = clock.elapsed();
        report.iterations += 1;
        report.slowest = report.slowest.max(took);
        let message = match result {
            Ok(label) => {
                let new_edges = coverage::collect_new();
                let count = report.outcomes.entry(label).or_insert(0);
                *count += 1;
                if (*count == 1 || new_edges > 0) && (iteration as usize) >= seeds {
                    if corpus.len() < CORPUS_MAX {
                        corpus.push(input.clone());
                    } else {
                        let victim = seeds + rng.below(CORPUS_MAX - seeds);
                        corpus[victim] = input.clone();
                    }
                }
                if took > options.slow {
                    Some(format!("slow input: {} ms", took.as_millis()))
                } else {
                    None
                }
            }
            Err(message) => Some(message),
        };
        if let Some(message) = message {
            let file = save_input(&options.crash_dir, target.name, &input);
            report.failure = Some(Failure {
                iteration,
                message,
                file,
            });
            break;
        }
        if let Some(every) = options.progress
            && last_progress.elapsed() >= every
        {
            last_progress = Instant::now();
            eprintln!(
                "{}: {} iterations, {} outcomes, corpus {}, {:.0} s",
                target.name,
                report.iterations,
                report.outcomes.len(),
                corpus.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    report.corpus_len = corpus.len();
    report.edges = coverage::edges_seen();
    report.elapsed = started.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_on_bang(data: &[u8]) -> String {
        assert!(!data.contains(&b'!'), "found a bang");
        (data.len() % 3).to_string()
    }

    static BANG: Target = Target {
        name: "bang",
        corpus: "none",
        run: panics_on_bang,
        max_len: 64,
        dictionary: &[b"!"],
        mutate: crate::mutate::generic,
    };

    /// A panicking input is caught, reported with its iteration and saved byte for byte; the
    /// same seed finds it at the same iteration.
    #[test]
    fn a_panic_is_caught_and_its_input_saved() {
        let dir =
            std::env::temp_dir().join(format!("presenced-fuzz-runner-{}", std::process::id()));
        let options = Options {
            seed: 3,
            iterations: 100_000,
            time_limit: None,
            corpus_dir: dir.join("no-corpus"),
            crash_dir: dir.join("crashes"),
            slow: Duration::from_secs(60),
            progress: None,
        };
        let first = fuzz(&BANG, &options);
        let failure = first.failure.expect("the bang is found");
        assert!(
            failure.message.contains("found a bang"),
            "{}",
            failure.message
        );
        let saved = fs::read(&failure.file).expect("the input was saved");
        assert!(saved.contains(&b'!'));
        assert!(!first.outcomes.is_empty());
        let second = fuzz(&BANG, &options);
        assert_eq!(
            second.failure.expect("found again").iteration,
            failure.iteration
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
