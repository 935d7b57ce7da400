//! loadgen: a RESP load generator for presenced and redis-server. See README.md.

mod cpu;
mod engine;
mod hist;
mod skim;
mod workload;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use engine::{Config, Outcome, Work};
use hist::Hist;
use skim::Skimmer;
use workload::{Params, Scenario, Target};

const USAGE: &str = "\
loadgen: a RESP load generator for presenced and redis-server

USAGE: loadgen [OPTIONS]

  --host HOST          server address (127.0.0.1)
  --port PORT          server port (6379)
  --target T           presenced | redis: which command forms to send (presenced)
  --scenario NAME      ping | ping-inline | heartbeat | batch-heartbeat | lookup | dropin |
                       populate (heartbeat)
  --connections N      connections (50)
  --threads T          client threads; connections are spread over them (1)
  --pipeline P         operations in flight per connection (16)
  --requests N         operations to complete in total (1000000 unless --duration-s)
  --duration-s S       start operations for S seconds, then wait for the replies
  --users U            user ID space [0, U) (10000000)
  --batch B            users per batch command: MHEARTBEAT, MSTATUS, MGET, and the number
                       of SETs in one redis batch-heartbeat operation (100)
  --seed N             seed of the ID generator (1)
  --ttl-s N            EX of the SETs sent to redis (30)
  --pool N             pre-encoded operations to cycle through (65536)
  --pool-mb M          cap on the pre-encoded pool, MiB (64); populate: per segment (1024)
  --resp3              send HELLO 3 on each connection first
  --server-pid PID     report that process's CPU time over the run (from /proc)
  --stall-s S          fail when no reply arrives for S seconds (10)
  --csv                print a CSV header and row
  --no-header          with --csv: the row only
  --json               print one JSON object
  -h, --help           this text

An operation is one request, except redis batch-heartbeat, where it is B SETs sent back to back
and complete when all B replies are in. Latency is per operation, from the write of its last
byte to the read of its last reply. Exits 1 on any error reply or lost connection.
";

struct Args {
    host: String,
    port: u16,
    target: Target,
    scenario: Scenario,
    connections: usize,
    threads: usize,
    pipeline: usize,
    requests: Option<u64>,
    duration_s: Option<f64>,
    users: u64,
    batch: u32,
    seed: u64,
    pool: usize,
    pool_mb: Option<usize>,
    resp3: bool,
    server_pid: Option<u32>,
    stall_s: f64,
    csv: bool,
    header: bool,
    json: bool,
}

fn parse_args(argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 6379,
        target: Target::Presenced,
        scenario: Scenario::Heartbeat,
        connections: 50,
        threads: 1,
        pipeline: 16,
        requests: None,
        duration_s: None,
        users: 10_000_000,
        batch: 100,
        seed: 1,
        pool: 65_536,
        pool_mb: None,
        resp3: false,
        server_pid: None,
        stall_s: 10.0,
        csv: false,
        header: true,
        json: false,
    };
    let mut it = argv;
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        let mut val = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            let clean: String = v.chars().filter(|&c| c != '_' && c != ',').collect();
            clean
                .parse()
                .map_err(|_| format!("{flag}: '{v}' is not a valid number"))
        }
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--host" => a.host = val(&name)?,
            "--port" => a.port = num(&name, val(&name)?)?,
            "--target" => a.target = val(&name)?.parse()?,
            "--scenario" => a.scenario = val(&name)?.parse()?,
            "--connections" | "-c" => a.connections = num(&name, val(&name)?)?,
            "--threads" => a.threads = num(&name, val(&name)?)?,
            "--pipeline" | "-P" => a.pipeline = num(&name, val(&name)?)?,
            "--requests" | "-n" => a.requests = Some(num(&name, val(&name)?)?),
            "--duration-s" => a.duration_s = Some(num(&name, val(&name)?)?),
            "--users" => a.users = num(&name, val(&name)?)?,
            "--batch" => a.batch = num(&name, val(&name)?)?,
            "--seed" => a.seed = num(&name, val(&name)?)?,
            "--ttl-s" => workload::SET_TTL_S.store(
                num(&name, val(&name)?)?,
                std::sync::atomic::Ordering::Relaxed,
            ),
            "--pool" => a.pool = num(&name, val(&name)?)?,
            "--pool-mb" => a.pool_mb = Some(num(&name, val(&name)?)?),
            "--resp3" => a.resp3 = true,
            "--server-pid" => a.server_pid = Some(num(&name, val(&name)?)?),
            "--stall-s" => a.stall_s = num(&name, val(&name)?)?,
            "--csv" => a.csv = true,
            "--no-header" => a.header = false,
            "--json" => a.json = true,
            _ => return Err(format!("unknown option '{flag}' (see --help)")),
        }
    }
    if a.connections == 0 || a.threads == 0 || a.pipeline == 0 || a.batch == 0 || a.users == 0 {
        return Err(
            "--connections, --threads, --pipeline, --batch and --users must be positive".into(),
        );
    }
    if a.threads > a.connections {
        return Err("--threads cannot exceed --connections".into());
    }
    if a.requests == Some(0) {
        return Err("--requests must be positive".into());
    }
    if let Some(d) = a.duration_s
        && !(d > 0.0 && d.is_finite())
    {
        return Err("--duration-s must be a positive number of seconds".into());
    }
    if a.pool_mb.is_some_and(|m| m == 0 || m > 4000) {
        return Err("--pool-mb must be from 1 to 4000".into());
    }
    if a.csv && a.json {
        return Err("choose one of --csv and --json".into());
    }
    Ok(Some(a))
}

fn connect(a: &Args) -> Result<Vec<TcpStream>, String> {
    let addr = (a.host.as_str(), a.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}:{}: {e}", a.host, a.port))?
        .next()
        .ok_or_else(|| format!("{}: no address", a.host))?;
    let mut out = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        if a.resp3 {
            handshake(&s, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")?;
        }
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        out.push(s);
    }
    Ok(out)
}

/// Sends one command on a blocking socket and waits for its reply; an error reply fails.
fn handshake(mut s: &TcpStream, cmd: &[u8]) -> Result<(), String> {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(cmd).map_err(|e| format!("handshake: {e}"))?;
    let mut skim = Skimmer::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).map_err(|e| format!("handshake: {e}"))?;
        if n == 0 {
            return Err("handshake: connection closed".into());
        }
        let c = skim.feed(&buf[..n]).map_err(|e| e.to_string())?;
        if c.errors > 0 {
            return Err(format!(
                "handshake: -{}",
                String::from_utf8_lossy(&skim.first_error)
            ));
        }
        if c.replies > 0 {
            return Ok(());
        }
    }
}

struct Report {
    args_scenario: Scenario,
    target: Target,
    connections: usize,
    threads: usize,
    pipeline: usize,
    batch: u32,
    ops: u64,
    commands: u64,
    users: u64,
    errors: u64,
    elapsed_s: f64,
    hist: Hist,
    client_cpu_s: Option<f64>,
    server_cpu_s: Option<f64>,
}

impl Report {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let rate = |n: u64| {
            if self.elapsed_s > 0.0 {
                format!("{:.0}", n as f64 / self.elapsed_s)
            } else {
                "0".into()
            }
        };
        let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
        let opt = |v: Option<f64>, prec: usize| v.map_or(String::new(), |v| format!("{v:.prec$}"));
        let per = |n: u64| {
            self.server_cpu_s
                .filter(|_| n > 0)
                .map(|s| s * 1e6 / n as f64)
        };
        vec![
            ("scenario", self.args_scenario.to_string()),
            ("target", self.target.to_string()),
            ("connections", self.connections.to_string()),
            ("threads", self.threads.to_string()),
            ("pipeline", self.pipeline.to_string()),
            ("batch", self.batch.to_string()),
            ("ops", self.ops.to_string()),
            ("commands", self.commands.to_string()),
            ("users", self.users.to_string()),
            ("errors", self.errors.to_string()),
            ("elapsed_s", format!("{:.3}", self.elapsed_s)),
            ("ops_per_s", rate(self.ops)),
            ("users_per_s", rate(self.users)),
            ("p50_us", us(self.hist.quantile(0.5))),
            ("p99_us", us(self.hist.quantile(0.99))),
            ("p999_us", us(self.hist.quantile(0.999))),
            ("max_us", us(self.hist.max())),
            ("client_cpu_s", opt(self.client_cpu_s, 2)),
            ("server_cpu_s", opt(self.server_cpu_s, 2)),
            ("server_cpu_us_per_op", opt(per(self.ops), 3)),
            ("server_cpu_us_per_user", opt(per(self.users), 3)),
        ]
    }

    fn print(&self, a: &Args) {
        let f = self.fields();
        if a.csv {
            if a.header {
                let names: Vec<&str> = f.iter().map(|(k, _)| *k).collect();
                println!("{}", names.join(","));
            }
            let vals: Vec<&str> = f.iter().map(|(_, v)| v.as_str()).collect();
            println!("{}", vals.join(","));
        } else if a.json {
            let body: Vec<String> = f
                .iter()
                .map(|(k, v)| {
                    let numeric = !v.is_empty() && v.parse::<f64>().is_ok();
                    if numeric {
                        format!("\"{k}\":{v}")
                    } else if v.is_empty() {
                        format!("\"{k}\":null")
                    } else {
                        format!("\"{k}\":\"{v}\"")
                    }
                })
                .collect();
            println!("{{{}}}", body.join(","));
        } else {
            let line: Vec<String> = f
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!("{}", line.join(" "));
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs the benchmark and prints its report; Ok(false) when errors or failures occurred.
fn run(a: &Args) -> Result<bool, String> {
    let params = Params {
        scenario: a.scenario,
        target: a.target,
        users: a.users,
        batch: a.batch,
    };
    let populate = a.scenario == Scenario::Populate;
    if populate && (a.requests.is_some() || a.duration_s.is_some()) {
        eprintln!("loadgen: populate sends every user once; --requests/--duration-s ignored");
    }
    let total_ops = match (a.requests, a.duration_s) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(1_000_000),
    };

    // Everything is encoded before the clock starts.
    let pool = if populate {
        None
    } else {
        let mb = a.pool_mb.unwrap_or(64);
        Some(Arc::new(params.random_pool(a.seed, a.pool, mb << 20)))
    };
    let streams = connect(a)?;

    let t = a.threads;
    let mut per_thread: Vec<Vec<TcpStream>> = (0..t).map(|_| Vec::new()).collect();
    for (i, s) in streams.into_iter().enumerate() {
        per_thread[i % t].push(s);
    }
    let cfg = Config {
        pipeline: a.pipeline,
        duration: if populate {
            None
        } else {
            a.duration_s.map(Duration::from_secs_f64)
        },
        stall: Duration::from_secs_f64(a.stall_s),
    };
    let ready = Barrier::new(t + 1);
    let server_pid = a.server_pid.map(|p| p.to_string());
    type Run = (Vec<Outcome>, Option<f64>, Option<f64>);
    let (outcomes, client_cpu_s, server_cpu_s) =
        std::thread::scope(|scope| -> Result<Run, String> {
            let mut handles = Vec::new();
            let mut assigned = 0u64;
            for (k, streams) in per_thread.into_iter().enumerate() {
                let work = match &pool {
                    Some(pool) => {
                        // Operations shared in proportion to connections.
                        let ops = total_ops.map(|n| {
                            let share = n * (assigned + streams.len() as u64)
                                / a.connections as u64
                                - n * assigned / a.connections as u64;
                            share.max(1)
                        });
                        Work::Random {
                            pool: Arc::clone(pool),
                            start: k * pool.len() / t,
                            ops,
                        }
                    }
                    None => Work::Populate {
                        params,
                        lo: a.users * k as u64 / t as u64,
                        hi: a.users * (k as u64 + 1) / t as u64,
                        segment_bytes: a.pool_mb.unwrap_or(1024) << 20,
                    },
                };
                assigned += streams.len() as u64;
                let cfg = &cfg;
                let ready = &ready;
                handles.push(scope.spawn(move || engine::run(streams, work, cfg, ready)));
            }
            let server0 = server_pid.as_deref().map(cpu::cpu_ticks).transpose()?;
            let client0 = cpu::cpu_ticks("self")?;
            ready.wait();
            let outs: Vec<Outcome> = handles
                .into_iter()
                .map(|h| h.join().expect("loadgen thread panicked"))
                .collect();
            let client1 = cpu::cpu_ticks("self")?;
            let server1 = server_pid.as_deref().map(cpu::cpu_ticks).transpose()?;
            let client = cpu::ticks_to_secs(client1.saturating_sub(client0));
            let server = server0
                .zip(server1)
                .map(|(a, b)| cpu::ticks_to_secs(b.saturating_sub(a)));
            Ok((outs, Some(client), server))
        })?;

    let mut hist = Hist::new();
    let mut r = Report {
        args_scenario: a.scenario,
        target: a.target,
        connections: a.connections,
        threads: a.threads,
        pipeline: a.pipeline,
        batch: a.batch,
        ops: 0,
        commands: 0,
        users: 0,
        errors: 0,
        elapsed_s: 0.0,
        hist: Hist::new(),
        client_cpu_s,
        server_cpu_s,
    };
    let mut failures = Vec::new();
    let mut first_error = Vec::new();
    let mut pushes = 0;
    for o in &outcomes {
        r.ops += o.ops;
        r.commands += o.commands;
        r.users += o.users;
        r.errors += o.errors;
        r.elapsed_s = r.elapsed_s.max(o.elapsed.as_secs_f64());
        hist.merge(&o.hist);
        pushes += o.pushes;
        if let Some(f) = &o.failure {
            failures.push(f.clone());
        }
        if first_error.is_empty() {
            first_error = o.first_error.clone();
        }
    }
    r.hist = hist;
    r.print(a);

    let mut ok = true;
    if populate && failures.is_empty() {
        let expected: u64 = (0..t as u64)
            .map(|k| params.populate_ops(a.users * k / t as u64, a.users * (k + 1) / t as u64))
            .sum();
        if r.ops != expected || r.users != a.users {
            eprintln!(
                "loadgen: populate completed {} of {expected} operations ({} of {} users)",
                r.ops, r.users, a.users
            );
            ok = false;
        }
    }
    if r.errors > 0 {
        eprintln!(
            "loadgen: {} error replies; the first: -{}",
            r.errors,
            String::from_utf8_lossy(&first_error)
        );
        ok = false;
    }
    for f in failures {
        eprintln!("loadgen: {f}");
        ok = false;
    }
    if pushes > 0 {
        eprintln!("loadgen: note: {pushes} push frames received (not counted as replies)");
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<Args>, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse("").unwrap().unwrap();
        assert_eq!(
            (a.connections, a.threads, a.pipeline, a.users, a.batch),
            (50, 1, 16, 10_000_000, 100)
        );
        let a = parse("--port=7000 --scenario lookup --target redis --requests 1_000_000 --csv")
            .unwrap()
            .unwrap();
        assert_eq!(a.port, 7000);
        assert_eq!(a.scenario, Scenario::Lookup);
        assert_eq!(a.target, Target::Redis);
        assert_eq!(a.requests, Some(1_000_000));
        assert!(a.csv);
        assert!(parse("--help").unwrap().is_none());
        assert!(parse("--bogus").is_err());
        assert!(parse("--port").is_err());
        assert!(parse("--scenario nope").is_err());
        assert!(parse("--pipeline 0").is_err());
        assert!(parse("--csv --json").is_err());
    }
}
