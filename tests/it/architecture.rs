//! Architecture invariants, checked on the source text: which modules a layer may import,
//! and where RESP bytes may be written. Each rule is a line of docs/ARCHITECTURE.md; this file
//! is what keeps those lines true. The checkers are themselves tested on small examples, so a
//! rule that stopped detecting anything would fail here too.

use std::path::{Path, PathBuf};

/// What each lower layer may import from the crate (`crate::<module>`); a layer not listed
/// here has no rule beyond the ones below. Lower layers depend only downward.
const LAYERS: &[(&str, &[&str])] = &[
    ("resp", &["limits", "resp"]),
    ("expiry", &["expiry"]),
    ("store", &["store", "expiry", "limits"]),
    ("clients", &["clients", "resp", "limits"]),
    (
        "pubsub",
        &["pubsub", "clients", "glob", "resp", "store", "limits"],
    ),
    ("dropin", &["dropin", "pubsub", "store"]),
    ("snapshot", &["snapshot", "store", "limits"]),
    ("memory", &["memory", "store"]),
    ("slowlog", &["slowlog", "clock", "limits"]),
];

/// Modules `cmd` must never import: commands see the services they are lent, not the accept
/// loop, the listeners or the connection that runs them.
const CMD_FORBIDDEN: &[&str] = &["server", "connection"];

/// Files outside `src/resp/` that may write CRLF, and why.
const CRLF_EXCEPTIONS: &[(&str, &str)] = &[(
    "src/cmd/info.rs",
    "INFO's body is text whose lines end in CRLF, as Redis's do; it travels inside one \
     verbatim string that `resp` encodes",
)];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("the source tree is readable");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The files of one module: `src/<module>.rs` or everything under `src/<module>/`.
fn module_files(module: &str) -> Vec<(String, String)> {
    let mut paths = Vec::new();
    let dir = src_dir().join(module);
    if dir.is_dir() {
        rust_files(&dir, &mut paths);
    }
    let file = src_dir().join(format!("{module}.rs"));
    if file.is_file() {
        paths.push(file);
    }
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a readable source file");
            (relative(&p), text)
        })
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The code of a file without its unit-test modules and without comments: tests may build
/// whatever they assert on, and comments may name anything.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]\nmod ") {
        code.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(open) = rest.find('{') else {
            break;
        };
        rest = &rest[block_end(rest, open)..];
    }
    code.push_str(rest);
    code.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The byte after the block whose `{` is at `open`, skipping braces inside string and
/// character literals (test modules hold JSON and RESP in strings).
fn block_end(text: &str, open: usize) -> usize {
    let bytes = text.as_bytes();
    // Byte positions throughout: source files may hold non-ASCII text.
    let mut depth = 0usize;
    let mut at = open;
    while at < bytes.len() {
        match bytes[at] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            b'r' if bytes[at..].starts_with(b"r#\"") => {
                let body = &bytes[at + 3..];
                at += body
                    .windows(2)
                    .position(|w| w == b"\"#")
                    .map_or(bytes.len(), |end| end + 5);
                continue;
            }
            b'"' => {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if bytes.get(at + 2) == Some(&b'\'') => at += 2,
            _ => {}
        }
        at += 1;
    }
    bytes.len()
}

/// Every top-level module named after `crate::`, including those inside `crate::{a, b::c}`.
fn crate_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

/// Imports of `forbidden` modules, or of anything outside `allowed` when that is given.
fn import_violations(
    files: &[(String, String)],
    allowed: Option<&[&str]>,
    forbidden: &[&str],
) -> Vec<String> {
    let mut violations = Vec::new();
    for (path, text) in files {
        for module in crate_modules(&code_of(text)) {
            let refused = forbidden.contains(&module.as_str())
                || allowed.is_some_and(|allowed| !allowed.contains(&module.as_str()));
            if refused {
                violations.push(format!("{path} imports crate::{module}"));
            }
        }
    }
    violations.sort();
    violations.dedup();
    violations
}

fn crlf_violations(files: &[(String, String)]) -> Vec<String> {
    files
        .iter()
        .filter(|(path, _)| !path.starts_with("src/resp/"))
        .filter(|(path, _)| !CRLF_EXCEPTIONS.iter().any(|(p, _)| p == path))
        .filter(|(_, text)| code_of(text).contains("\\r\\n"))
        .map(|(path, _)| format!("{path} writes a RESP literal (\\r\\n) outside src/resp/"))
        .collect()
}

/// Architecture invariant: each lower layer imports only the layers below it.
#[test]
fn lower_layers_depend_only_downward() {
    let mut violations = Vec::new();
    for (module, allowed) in LAYERS {
        violations.extend(import_violations(&module_files(module), Some(allowed), &[]));
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Architecture invariant: nothing under src/cmd/ imports the server or the connection.
#[test]
fn commands_never_see_the_server() {
    let files = module_files("cmd");
    assert!(files.len() > 5, "src/cmd/ found");
    let violations = import_violations(&files, None, CMD_FORBIDDEN);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Architecture invariant: only src/resp/ writes RESP bytes (the listed exceptions say why).
#[test]
fn only_resp_writes_resp_bytes() {
    let mut paths = Vec::new();
    rust_files(&src_dir(), &mut paths);
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("a readable source file");
            (relative(p), text)
        })
        .collect();
    let violations = crlf_violations(&files);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    for (path, why) in CRLF_EXCEPTIONS {
        assert!(
            files.iter().any(|(p, _)| p == path),
            "exception {path} ({why}) names a file that no longer exists"
        );
    }
}

/// Architecture invariant: the store says what happened (`StoreError`, `UserIdError`) and
/// never how to tell a client: no Redis error text under src/store/.
#[test]
fn store_writes_no_reply_text() {
    let violations: Vec<String> = module_files("store")
        .iter()
        .filter(|(_, text)| code_of(text).contains("\"ERR "))
        .map(|(path, _)| format!("{path} writes reply text"))
        .collect();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The checkers catch what they are meant to: each rule, broken on purpose in a small example,
/// is reported; the same example without the break is not.
#[test]
fn checkers_detect_broken_rules() {
    let file = |text: &str| vec![("src/cmd/x.rs".to_string(), text.to_string())];
    let forbidden = |text: &str| import_violations(&file(text), None, CMD_FORBIDDEN);
    assert_eq!(forbidden("use crate::server::Services;").len(), 1);
    assert_eq!(forbidden("use crate::{clock, server};").len(), 1);
    assert_eq!(forbidden("let x = crate::connection::accept;").len(), 1);
    assert!(forbidden("use crate::services::Shared;").is_empty());
    assert!(forbidden("// crate::server is not imported here").is_empty());
    assert!(forbidden("#[cfg(test)]\nmod tests { use crate::server; }").is_empty());
    assert_eq!(
        forbidden("#[cfg(test)]\nmod tests { const J: &str = \"}\"; }\nuse crate::server;").len(),
        1,
        "code after a test module is still checked"
    );
    let store = |text: &str| {
        import_violations(
            &[("src/store/x.rs".to_string(), text.to_string())],
            Some(&["store", "expiry", "limits"]),
            &[],
        )
    };
    assert_eq!(store("use crate::pubsub::PubSub;").len(), 1);
    assert_eq!(store("use crate::cmd::Ctx;").len(), 1);
    assert!(store("use crate::expiry::TimingWheel;").is_empty());
    let crlf = |path: &str, text: &str| crlf_violations(&[(path.to_string(), text.to_string())]);
    assert_eq!(
        crlf("src/pubsub/x.rs", r#"out.put_slice(b"\r\n");"#).len(),
        1
    );
    assert!(crlf("src/resp/x.rs", r#"out.put_slice(b"\r\n");"#).is_empty());
    assert!(crlf("src/pubsub/x.rs", "// ends in \\r\\n").is_empty());
}
