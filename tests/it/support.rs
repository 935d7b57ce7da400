//! Starts the real `presenced` binary on an ephemeral loopback port, and the small helpers every
//! test module shares: connections with the `redis` crate (RESP2 and RESP3) and raw TCP.
//!
//! The server's log is collected; a test that leaves an unexpected WARN or ERROR line in it
//! fails when its server is dropped, unless the test declared that line with `expect_log`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct TestServer {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    expected_log: Vec<String>,
}

impl TestServer {
    /// A server with test defaults: port 0, a 1,048,576-slot store.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// A server with extra flags; later flags override the defaults.
    pub fn start_with(extra_args: &[&str]) -> TestServer {
        let dir = unique_temp_dir();
        let dir_arg = dir.to_string_lossy().into_owned();
        TestServer::start_in(
            &dir_arg,
            &[&["--snapshot-interval", "0"], extra_args].concat(),
        )
    }

    /// A server whose snapshot directory is `dir` (persistence tests restart in the same
    /// directory); later flags override the defaults.
    pub fn start_in(dir: &str, extra_args: &[&str]) -> TestServer {
        TestServer::start_from(None, dir, extra_args)
    }

    /// A server started as `presenced <config file> <test defaults> <extra flags>`: the
    /// file's settings, then the test defaults (port 0, the store size, `dir`), then
    /// `extra_args` override one another in that order.
    pub fn start_from(config_file: Option<&str>, dir: &str, extra_args: &[&str]) -> TestServer {
        let mut args: Vec<&str> = config_file.into_iter().collect();
        args.extend([
            "--port",
            "0",
            "--capacity",
            "1048576",
            "--log-level",
            "info",
        ]);
        args.extend(["--dir", dir]);
        args.extend(extra_args);
        let (child, log, port_rx) = spawn_logged(&args);
        let port = port_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("presenced logs its listening address within 20 s");
        TestServer {
            child,
            port,
            log,
            expected_log: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A `redis` crate connection speaking RESP2.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("valid url")
            .get_connection()
            .expect("connects")
    }

    /// A `redis` crate connection that negotiated RESP3 with `HELLO 3`.
    pub fn client_resp3(&self) -> redis::Connection {
        redis::Client::open(format!("{}?protocol=resp3", self.url()))
            .expect("valid url")
            .get_connection()
            .expect("connects with HELLO 3")
    }

    /// A plain TCP connection with a read timeout, for byte-exact checks.
    pub fn raw(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        stream
    }

    /// Declares that a WARN/ERROR log line containing `fragment` is expected.
    pub fn expect_log(&mut self, fragment: &str) {
        self.expected_log.push(fragment.to_string());
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the server process exits (after SHUTDOWN or a signal); its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            return;
        }
        let unexpected: Vec<String> = self
            .log_lines()
            .into_iter()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .filter(|l| !self.expected_log.iter().any(|e| l.contains(e)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "unexpected WARN/ERROR lines in the server log:\n{}",
            unexpected.join("\n")
        );
    }
}

/// A running binary, the lines of its log as they arrive, and the port it announces.
pub type Logged = (
    Child,
    Arc<Mutex<Vec<String>>>,
    std::sync::mpsc::Receiver<u16>,
);

/// Starts the presenced binary with exactly `args`, draining its stderr for its whole life
/// (so it never blocks on logging) into a shared log, and reporting the port from its
/// "listening on" line.
pub fn spawn_logged(args: &[&str]) -> Logged {
    let mut child = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the presenced binary starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let log_writer = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("");
                if let Some(port) = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) {
                    let _ = port_tx.send(port);
                }
            }
            log_writer.lock().unwrap().push(line);
        }
    });
    (child, log, port_rx)
}

/// A fresh directory under the system's temp dir, unique to this process and call.
pub fn unique_temp_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "presenced-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Sends `request` and returns every byte the server sends until it goes quiet for the read
/// timeout, with `<CLOSED>` appended if the server closed the connection.
pub fn exchange(stream: &mut TcpStream, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).expect("write");
    read_available(stream)
}

pub fn read_available(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                out.extend_from_slice(b"<CLOSED>");
                return out;
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return out;
            }
            Err(_) => {
                out.extend_from_slice(b"<CLOSED>");
                return out;
            }
        }
    }
}

/// Reads until `expected_len` bytes arrived or the connection goes quiet.
pub fn read_exact_len(stream: &mut TcpStream, expected_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < expected_len && Instant::now() < deadline {
        let chunk = read_available(stream);
        if chunk.ends_with(b"<CLOSED>") {
            out.extend_from_slice(&chunk);
            break;
        }
        out.extend_from_slice(&chunk);
    }
    out
}

/// The RESP encoding of a command, as a client library would send it.
pub fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Runs a command expecting an error and returns its text (code included, as Redis sends it).
pub fn error_text<T: redis::FromRedisValue + std::fmt::Debug>(
    con: &mut redis::Connection,
    cmd: &mut redis::Cmd,
) -> String {
    match cmd.query::<T>(con) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            // The redis crate splits "ERR text" into a code and a detail; join them back.
            match (e.code(), e.detail()) {
                (Some(code), Some(detail)) => format!("{code} {detail}"),
                (Some(code), None) => code.to_string(),
                _ => e.to_string(),
            }
        }
    }
}

/// Held by tests that load the machine (hundreds of thousands of events, benchmarks), so that
/// on a 2-core machine they do not run at the same time and judge each other's load.
pub fn heavy_test_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
