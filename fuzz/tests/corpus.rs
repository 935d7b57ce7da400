//! Every target over its committed seed corpus, then a short fixed-seed fuzz run of each: the
//! seeds keep meaning what they were written for as the code changes (`cargo test
//! --workspace` runs this; the longer CI run is `scripts/test`'s fuzz step).

use std::time::Duration;

use presenced_fuzz::crate_dir;
use presenced_fuzz::runner::{self, Options};
use presenced_fuzz::targets::{TARGETS, Target};

fn corpus_files(target: &Target) -> Vec<(String, Vec<u8>)> {
    let dir = crate_dir().join("corpus").join(target.corpus);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_passes_its_target() {
    for target in TARGETS {
        let files = corpus_files(target);
        assert!(files.len() >= 3, "{}: a seed corpus", target.name);
        for (name, bytes) in &files {
            let label = runner::run_once(target, bytes)
                .unwrap_or_else(|panic| panic!("{} on {name}: {panic}", target.name));
            // The snapshot seeds are real snapshots: they must load, not just fail cleanly
            // (a format change that refuses them needs `--make-seeds`).
            if target.name == "snapshot" {
                assert_eq!(label, "ok", "{name}");
            }
        }
    }
}

#[test]
fn seed_corpus_stays_small() {
    let total: usize = TARGETS
        .iter()
        .flat_map(corpus_files)
        .map(|(_, bytes)| bytes.len())
        .sum();
    assert!(total < 200 * 1024, "{total} bytes of seeds");
}

#[test]
fn short_fixed_seed_run_finds_nothing() {
    let crashes = std::env::temp_dir().join(format!("presenced-fuzz-test-{}", std::process::id()));
    for target in TARGETS {
        let options = Options {
            seed: 7,
            iterations: 300,
            time_limit: Some(Duration::from_secs(60)),
            corpus_dir: crate_dir().join("corpus").join(target.corpus),
            crash_dir: crashes.clone(),
            slow: Duration::from_secs(30),
            progress: None,
        };
        let report = runner::fuzz(target, &options);
        assert!(
            report.failure.is_none(),
            "{}: {:?}",
            target.name,
            report.failure
        );
        assert!(report.iterations > 0);
    }
    let _ = std::fs::remove_dir_all(&crashes);
}
