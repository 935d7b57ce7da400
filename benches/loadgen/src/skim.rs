//! A streaming RESP2/RESP3 reply skimmer: it finds where each top-level reply ends and counts
//! replies and errors, without building any value. Its whole state lives here, so a reply may be
//! split across reads at any byte and the read buffer never has to keep a partial reply.

/// What one `feed` found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Top-level replies completed (pushes excluded).
    pub replies: u64,
    /// Of those, how many were an error or contained one (`-` or `!` at any depth).
    pub errors: u64,
}

/// The server sent bytes that are not RESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkimError {
    pub byte: u8,
    pub at: &'static str,
}

impl std::fmt::Display for SkimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "protocol error: unexpected byte {:?} {}",
            self.byte as char, self.at
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the type byte of the next element.
    Type,
    /// Inside a simple line (`+ - : _ , # (`): skip to `\n`.
    Line,
    /// Inside the length line of a bulk (`$ ! =`) or aggregate (`* ~ > % |`).
    Header,
    /// Inside a bulk payload: `skip` bytes (payload + CRLF) remain.
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bulk,
    /// An aggregate whose count is multiplied by `mult` (2 for maps and attributes).
    Agg {
        mult: u64,
        attr: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    remaining: u64,
    /// An attribute (`|`) precedes a value and is not an element of its parent.
    attr: bool,
}

/// Longest error message kept for the report.
const ERROR_CAPTURE: usize = 200;

#[derive(Debug)]
pub struct Skimmer {
    state: State,
    kind: Kind,
    num: u64,
    neg: bool,
    digits: bool,
    skip: u64,
    stack: Vec<Frame>,
    cur_error: bool,
    cur_push: bool,
    capturing: bool,
    /// The first error line seen (without its `-` and CRLF), for the report.
    pub first_error: Vec<u8>,
    /// Top-level RESP3 push frames (`>`), which answer no request.
    pub pushes: u64,
}

impl Default for Skimmer {
    fn default() -> Self {
        Self::new()
    }
}

impl Skimmer {
    pub fn new() -> Self {
        Skimmer {
            state: State::Type,
            kind: Kind::Bulk,
            num: 0,
            neg: false,
            digits: false,
            skip: 0,
            stack: Vec::with_capacity(8),
            cur_error: false,
            cur_push: false,
            capturing: false,
            first_error: Vec::new(),
            pushes: 0,
        }
    }

    /// True between replies (no partial reply pending).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Type && self.stack.is_empty()
    }

    /// Consumes `data`, the next bytes of the reply stream.
    pub fn feed(&mut self, data: &[u8]) -> Result<Counts, SkimError> {
        let mut counts = Counts::default();
        let mut i = 0;
        let n = data.len();
        while i < n {
            match self.state {
                State::Type => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'+' | b':' | b'_' | b',' | b'#' | b'(' => self.state = State::Line,
                        b'-' => {
                            self.cur_error = true;
                            self.capturing = self.first_error.is_empty();
                            self.state = State::Line;
                        }
                        b'$' | b'=' => self.header(Kind::Bulk),
                        b'!' => {
                            self.cur_error = true;
                            self.header(Kind::Bulk);
                        }
                        b'*' | b'~' => self.header(Kind::Agg {
                            mult: 1,
                            attr: false,
                        }),
                        b'>' => {
                            if self.stack.is_empty() {
                                self.cur_push = true;
                            }
                            self.header(Kind::Agg {
                                mult: 1,
                                attr: false,
                            })
                        }
                        b'%' => self.header(Kind::Agg {
                            mult: 2,
                            attr: false,
                        }),
                        b'|' => self.header(Kind::Agg {
                            mult: 2,
                            attr: true,
                        }),
                        _ => {
                            return Err(SkimError {
                                byte: b,
                                at: "where a reply type was expected",
                            });
                        }
                    }
                }
                State::Line => {
                    let rest = &data[i..];
                    match rest.iter().position(|&c| c == b'\n') {
                        Some(p) => {
                            if self.capturing {
                                self.capture(&rest[..p]);
                                self.capturing = false;
                                if self.first_error.last() == Some(&b'\r') {
                                    self.first_error.pop();
                                }
                            }
                            i += p + 1;
                            self.state = State::Type;
                            self.element_done(&mut counts);
                        }
                        None => {
                            if self.capturing {
                                self.capture(rest);
                            }
                            i = n;
                        }
                    }
                }
                State::Header => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'0'..=b'9' => {
                            self.num = self
                                .num
                                .checked_mul(10)
                                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                                .ok_or(SkimError {
                                    byte: b,
                                    at: "in an oversized length",
                                })?;
                            self.digits = true;
                        }
                        b'-' if !self.neg && !self.digits => self.neg = true,
                        b'\r' => {}
                        b'\n' => self.header_done(&mut counts)?,
                        _ => {
                            return Err(SkimError {
                                byte: b,
                                at: "in a length",
                            });
                        }
                    }
                }
                State::Body => {
                    let avail = (n - i) as u64;
                    if avail < self.skip {
                        self.skip -= avail;
                        i = n;
                    } else {
                        i += self.skip as usize;
                        self.skip = 0;
                        self.state = State::Type;
                        self.element_done(&mut counts);
                    }
                }
            }
        }
        Ok(counts)
    }

    fn capture(&mut self, bytes: &[u8]) {
        let room = ERROR_CAPTURE.saturating_sub(self.first_error.len());
        self.first_error
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn header(&mut self, kind: Kind) {
        self.kind = kind;
        self.num = 0;
        self.neg = false;
        self.digits = false;
        self.state = State::Header;
    }

    fn header_done(&mut self, counts: &mut Counts) -> Result<(), SkimError> {
        if !self.digits {
            return Err(SkimError {
                byte: b'\n',
                at: "in a length without digits",
            });
        }
        self.state = State::Type;
        match self.kind {
            Kind::Bulk => {
                if self.neg {
                    // $-1: RESP2 null bulk string.
                    self.element_done(counts);
                } else {
                    self.skip = self.num + 2;
                    self.state = State::Body;
                }
            }
            Kind::Agg { mult, attr } => {
                let count = if self.neg { 0 } else { self.num * mult };
                if count > 0 {
                    self.stack.push(Frame {
                        remaining: count,
                        attr,
                    });
                } else if !attr {
                    // *-1 / *0 / %0: an element by itself. An empty attribute is nothing.
                    self.element_done(counts);
                }
            }
        }
        Ok(())
    }

    fn element_done(&mut self, counts: &mut Counts) {
        loop {
            match self.stack.last_mut() {
                None => {
                    if self.cur_push {
                        self.pushes += 1;
                    } else {
                        counts.replies += 1;
                        if self.cur_error {
                            counts.errors += 1;
                        }
                    }
                    self.cur_error = false;
                    self.cur_push = false;
                    return;
                }
                Some(frame) => {
                    frame.remaining -= 1;
                    if frame.remaining > 0 {
                        return;
                    }
                    let attr = frame.attr;
                    self.stack.pop();
                    if attr {
                        // The attribute is complete; the value it annotates follows.
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipelined stream of many reply shapes: 12 top-level replies, 3 of them errors,
    /// plus one push frame.
    fn stream() -> Vec<u8> {
        let parts: &[&[u8]] = &[
            b"+OK\r\n",
            b":1\r\n",
            b"-ERR wrong number of arguments for 'heartbeat' command\r\n",
            b"$6\r\nonline\r\n",
            b"$-1\r\n",
            // MSTATUS: array of arrays, with a nil last-seen and a $ containing CRLF.
            b"*3\r\n*2\r\n$6\r\nonline\r\n:1795704729295\r\n*2\r\n$7\r\noffline\r\n$-1\r\n*2\r\n$4\r\na\r\nb\r\n:0\r\n",
            // RESP3 map (STATUS) with a null.
            b"%2\r\n$5\r\nstate\r\n$7\r\noffline\r\n$12\r\nlast_seen_ms\r\n_\r\n",
            // A push between replies: not counted as a reply.
            b">3\r\n$7\r\nmessage\r\n$10\r\npresence:1\r\n$2\r\n{}\r\n",
            // Nested empty and null aggregates, set, double, bool, big number, verbatim.
            b"*4\r\n*0\r\n*-1\r\n~2\r\n,1.5\r\n#t\r\n%1\r\n(12345678901234567890\r\n=8\r\ntxt:abcd\r\n",
            // An error nested in an array (EXEC-like) makes the reply an error.
            b"*2\r\n+OK\r\n-WRONGTYPE Operation against a key\r\n",
            // An attribute before a reply, and inside an array.
            b"|1\r\n+key\r\n*1\r\n:1\r\n$2\r\nhi\r\n",
            b"*2\r\n|1\r\n+a\r\n+b\r\n:7\r\n:8\r\n",
            // Blob error.
            b"!5\r\nERR x\r\n",
        ];
        parts.concat()
    }

    const REPLIES: u64 = 12;
    const ERRORS: u64 = 3;

    fn skim_in_pieces(data: &[u8], cuts: &[usize]) -> (Counts, Skimmer) {
        let mut s = Skimmer::new();
        let mut total = Counts::default();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&data.len())) {
            let got = s.feed(&data[prev..c]).expect("valid RESP");
            total.replies += got.replies;
            total.errors += got.errors;
            prev = c;
        }
        (total, s)
    }

    #[test]
    fn whole_stream() {
        let data = stream();
        let (c, s) = skim_in_pieces(&data, &[]);
        assert_eq!(
            c,
            Counts {
                replies: REPLIES,
                errors: ERRORS
            }
        );
        assert_eq!(s.pushes, 1);
        assert!(s.at_boundary());
        assert_eq!(
            s.first_error,
            b"ERR wrong number of arguments for 'heartbeat' command"
        );
    }

    #[test]
    fn every_split_point() {
        let data = stream();
        for cut in 0..=data.len() {
            let (c, s) = skim_in_pieces(&data, &[cut]);
            assert_eq!(c.replies, REPLIES, "cut at {cut}");
            assert_eq!(c.errors, ERRORS, "cut at {cut}");
            assert_eq!(s.pushes, 1, "cut at {cut}");
            assert!(s.at_boundary(), "cut at {cut}");
            assert_eq!(
                s.first_error, b"ERR wrong number of arguments for 'heartbeat' command",
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_pair_of_split_points() {
        let data = stream();
        for a in 0..=data.len() {
            for b in a..=data.len() {
                let (c, _) = skim_in_pieces(&data, &[a, b]);
                assert_eq!((c.replies, c.errors), (REPLIES, ERRORS), "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn byte_at_a_time_counts_each_reply_at_its_last_byte() {
        let data = stream();
        let mut s = Skimmer::new();
        let mut ends = Vec::new();
        for (i, b) in data.iter().enumerate() {
            let c = s.feed(std::slice::from_ref(b)).unwrap();
            if c.replies > 0 {
                assert_eq!(c.replies, 1);
                ends.push(i);
            }
            // A reply is complete exactly when the byte is its final '\n'.
            if c.replies > 0 {
                assert_eq!(*b, b'\n');
            }
        }
        assert_eq!(ends.len() as u64, REPLIES);
        assert_eq!(*ends.last().unwrap(), data.len() - 1);
    }

    #[test]
    fn partial_reply_is_not_counted() {
        let mut s = Skimmer::new();
        let c = s
            .feed(b"*2\r\n*2\r\n$6\r\nonline\r\n:1\r\n*2\r\n$7\r\noff")
            .unwrap();
        assert_eq!(c.replies, 0);
        assert!(!s.at_boundary());
        let c = s.feed(b"line\r\n$-1\r\n").unwrap();
        assert_eq!(c.replies, 1);
        assert!(s.at_boundary());
    }

    #[test]
    fn large_bulk_split_anywhere() {
        let body = vec![b'x'; 70_000];
        let mut data = format!("${}\r\n", body.len()).into_bytes();
        data.extend_from_slice(&body);
        data.extend_from_slice(b"\r\n:5\r\n");
        for cut in [1, 3, 7, 8, 100, 70_000, 70_007, 70_008, 70_010] {
            let (c, _) = skim_in_pieces(&data, &[cut]);
            assert_eq!(c.replies, 2, "cut {cut}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Skimmer::new().feed(b"hello\r\n").is_err());
        assert!(Skimmer::new().feed(b"$x\r\n").is_err());
        assert!(Skimmer::new().feed(b"*\r\n").is_err());
        assert!(
            Skimmer::new()
                .feed(b"$99999999999999999999999\r\n")
                .is_err()
        );
    }

    #[test]
    fn error_capture_is_capped_and_split_safe() {
        let long = format!("-ERR {}\r\n+OK\r\n", "y".repeat(500)).into_bytes();
        for cut in [0, 1, 2, 100, 250, 504, 505, 506] {
            let (c, s) = skim_in_pieces(&long, &[cut]);
            assert_eq!((c.replies, c.errors), (2, 1));
            assert_eq!(s.first_error.len(), ERROR_CAPTURE, "cut {cut}");
            assert!(s.first_error.starts_with(b"ERR yyy"));
        }
        let short = b"-ERR x\r\n-ERR second\r\n";
        for cut in 0..=short.len() {
            let (c, s) = skim_in_pieces(short, &[cut]);
            assert_eq!((c.replies, c.errors), (2, 2));
            assert_eq!(s.first_error, b"ERR x", "cut {cut}");
        }
    }
}
