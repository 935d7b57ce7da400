#!/usr/bin/env python3
"""Checks presenced with redis-cli (Debian's redis-tools, Redis 7), in the ways people use it.

Usage: redis_cli_check.py --port N [--host H] [--redis-cli PATH]

- One-shot commands with arguments (`redis-cli -p N HEARTBEAT 42`), in RESP2 and with `-3`.
- Commands piped on stdin without a terminal (`printf 'HEARTBEAT 5\\nSTATUS 5\\n' | redis-cli`).
- Mass insertion with `redis-cli --pipe`, which ends with an ECHO of a random marker.
- An interactive session on a pseudo-terminal, with linenoise line editing and hints as a user
  sees them: redis-cli 7 sends `COMMAND DOCS` on start to build its help and hints, so the
  session checks `help HEARTBEAT` shows presenced's own documentation.

Uses only the standard library. Prints one line per failed check and a summary line; exits 1
if any check failed.
"""

import argparse
import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            message = name + (f": {detail}" if detail else "")
            self.failed.append(message)
            print(f"FAIL {message}", flush=True)
        return ok

    def equal(self, name, actual, expected):
        return self.check(name, actual == expected, f"expected {expected!r}, got {actual!r}")


# No history written to the user's home, and no user settings (hints off, say) read from it.
QUIET_ENV = {"REDISCLI_HISTFILE": "/dev/null", "REDISCLI_RCFILE": "/dev/null"}


class Cli:
    def __init__(self, binary, host, port):
        self.binary = binary
        self.base = [binary, "-h", host, "-p", str(port)]

    def run(self, *args, stdin=None, flags=()):
        """Runs redis-cli without a terminal; returns (exit status, stdout, stderr)."""
        done = subprocess.run(
            [*self.base, *flags, *map(str, args)],
            input=stdin,
            env=dict(os.environ, **QUIET_ENV),
            capture_output=True,
            timeout=60,
        )
        return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")


def screen_lines(raw):
    """What a terminal shows for `raw`: carriage returns, erase-line and cursor-forward
    sequences applied, colours dropped. redis-cli's line editor redraws the prompt line on
    every key, so the raw bytes hold each intermediate state of the line."""
    lines, line, col = [], [], 0
    i, text = 0, raw.decode(errors="replace")
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            m = re.match(r"\x1b\[([0-9;?]*)([A-Za-z])", text[i:])
            if m:
                params, final = m.group(1), m.group(2)
                if final == "K" and params in ("", "0"):
                    del line[col:]
                elif final == "C":
                    col += int(params or "1")
                    line.extend(" " * max(0, col - len(line)))
                i += len(m.group(0))
                continue
            i += 1
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif ch >= " ":
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
        i += 1
    if line:
        lines.append("".join(line).rstrip())
    return lines


def interactive(binary, host, port, inputs):
    """Types each input line into an interactive redis-cli on a pseudo-terminal; returns
    (exit status, raw output bytes)."""
    master, slave = os.openpty()
    # A real size, as a terminal window has: otherwise the line editor asks the terminal for
    # the cursor position and waits for an answer.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = dict(os.environ, TERM="xterm", **QUIET_ENV)
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [binary, "-h", host, "-p", str(port)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    out = bytearray()

    def read_until(pattern, timeout):
        """Collects output until `pattern` matches what arrived since `start`, or until the
        terminal closes when `pattern` is None; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pattern is not None and re.search(pattern, bytes(out[start:]), re.S):
                return True
            ready, _, _ = select.select([master], [], [], 0.02)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: redis-cli exited and the terminal closed.
                    return pattern is None
                if not chunk:
                    return pattern is None
                out.extend(chunk)
        return False

    prompt = re.escape(f"{host}:{port}> ".encode())
    try:
        start = 0
        read_until(prompt + rb"$", 10)
        for line in inputs:
            # Typed only once the prompt is out: the line editor switches the terminal to raw
            # mode just before printing it, and that switch discards keys typed earlier.
            start = len(out)
            os.write(master, line.encode() + b"\r")
            if line.lower() == "quit":
                read_until(None, 10)
                break
            # The reply is complete when a fresh prompt follows the newline ending the line.
            echoed = re.escape(line.encode()) + rb"\r(?:\x1b\[\d+C)?\r?\n"
            read_until(echoed + rb"(?:.*\n)?" + prompt + rb"$", 10)
        status = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    finally:
        os.close(master)
    return status, bytes(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis-cli", default="redis-cli")
    args = parser.parse_args()

    binary = shutil.which(args.redis_cli)
    if binary is None:
        print(f"redis_cli_check: {args.redis_cli} not found; run scripts/install-test-deps", file=sys.stderr)
        return 2
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    cli = Cli(binary, args.host, args.port)
    c = Checks()

    # One-shot commands. Users are made offline first so every run gives the same answers.
    cli.run("OFFLINE", 42)
    cli.run("OFFLINE", 5)
    c.equal("redis-cli HEARTBEAT 42", cli.run("HEARTBEAT", 42), (0, "1\n", ""))
    code, out, err = cli.run("MSTATUS", 42, 43)
    c.check(
        "redis-cli MSTATUS 42 43 prints online, last-seen, offline, empty nil",
        code == 0 and err == "" and re.fullmatch(r"online\n\d{13}\noffline\n\n", out) is not None,
        repr((code, out, err)),
    )
    code, out, err = cli.run("STATUS", 42, flags=["-3"])
    c.check(
        "redis-cli -3 STATUS 42 prints the RESP3 map's keys and values",
        code == 0 and err == "" and re.fullmatch(r"state online\nlast_seen_ms \d{13}\n", out) is not None,
        repr((code, out, err)),
    )
    code, out, err = cli.run("STATUS", 42, flags=["--no-raw"])
    c.check(
        "redis-cli --no-raw STATUS 42 prints the array as a terminal would",
        code == 0 and re.fullmatch(r'1\) "online"\n2\) \(integer\) \d{13}\n', out) is not None,
        repr((code, out, err)),
    )
    code, out, err = cli.run("INFO", "presence")
    c.check(
        "redis-cli INFO presence",
        code == 0 and "# Presence" in out and re.search(r"^heartbeats_total:\d+\r?$", out, re.M) is not None,
        repr((code, out, err)),
    )
    # Byte for byte what redis-cli 7.0 prints for Redis 7's reply (it exits 0 there too).
    c.equal(
        "redis-cli prints an unknown command's error as for Redis",
        cli.run("NOSUCHCMD", "a"),
        (0, "ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' \n\n", ""),
    )

    # Commands piped on stdin, no terminal: one reply per line, raw format.
    code, out, err = cli.run(stdin=b"HEARTBEAT 5\nSTATUS 5\n")
    c.check(
        "printf 'HEARTBEAT 5\\nSTATUS 5\\n' | redis-cli",
        code == 0 and err == "" and re.fullmatch(r"1\nonline\n\d{13}\n", out) is not None,
        repr((code, out, err)),
    )
    code, out, err = cli.run(stdin=b"MHEARTBEAT 6 7 8\nPING\nECHO \"two words\"\nDBSIZE\n")
    c.check(
        "piped MHEARTBEAT, PING, quoted ECHO, DBSIZE",
        code == 0 and re.fullmatch(r"[0-3]\nPONG\ntwo words\n\d+\n", out) is not None,
        repr((code, out, err)),
    )

    # Mass insertion: raw RESP on stdin, then redis-cli's ECHO marker to know it is done.
    users = range(300_000, 310_000)
    payload = b"".join(
        b"*2\r\n$9\r\nHEARTBEAT\r\n$%d\r\n%s\r\n" % (len(str(u)), str(u).encode()) for u in users
    )
    code, out, err = cli.run(stdin=payload, flags=["--pipe"])
    c.check(
        "redis-cli --pipe of 10,000 HEARTBEATs: no errors, 10,000 replies",
        code == 0 and "errors: 0, replies: 10000" in out + err,
        repr((code, out, err)),
    )
    code, out, err = cli.run("MSTATUS", *users)
    c.equal("all 10,000 piped users are online", (code, out.count("online\n")), (0, 10_000))

    # The interactive session, on a pseudo-terminal.
    inputs = ["HEARTBEAT 42", "STATUS 42", "MSTATUS 42 43", "PING", "help HEARTBEAT", "NOSUCHCMD a", "quit"]
    status, raw = interactive(binary, args.host, args.port, inputs)
    lines = screen_lines(raw)
    transcript = "\n".join(lines)
    prompt = f"{args.host}:{args.port}> "
    c.equal("interactive redis-cli exits with status 0 after quit", status, 0)
    expected = [
        rf"{re.escape(prompt)}HEARTBEAT 42",
        r"\(integer\) 0",
        rf"{re.escape(prompt)}STATUS 42",
        r'1\) "online"',
        r"2\) \(integer\) \d{13}",
        rf"{re.escape(prompt)}MSTATUS 42 43",
        r'1\) 1\) "online"',
        r"   2\) \(integer\) \d{13}",
        r'2\) 1\) "offline"',
        r"   2\) \(nil\)",
        rf"{re.escape(prompt)}PING",
        r"PONG",
        rf"{re.escape(prompt)}help HEARTBEAT",
        r"",
        r"  HEARTBEAT ?.*",
        r"  summary: Marks a user online now .*",
        r"  since: 0\.1\.0",
        r"  group: presence",
        r"",
        rf"{re.escape(prompt)}NOSUCHCMD a",
        r"\(error\) ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' ?",
        rf"{re.escape(prompt)}quit",
    ]
    if c.check(
        "interactive transcript has as many lines as expected",
        len(lines) == len(expected),
        f"{len(lines)} lines, expected {len(expected)}:\n{transcript}",
    ):
        for got, pattern in zip(lines, expected):
            c.check(f"interactive line matches {pattern!r}", re.fullmatch(pattern, got) is not None, repr(got))
    unexpected_errors = [
        line for line in lines if re.search(r"error|ERR", line) and "NOSUCHCMD" not in line
    ]
    c.equal("no error in the interactive session but the deliberate one", unexpected_errors, [])
    # Hints: after a command name, redis-cli draws the hint (its arguments, from COMMAND DOCS)
    # in grey; that it draws one for HEARTBEAT at all shows it learnt the command from the server.
    c.check(
        "interactive redis-cli draws a hint after HEARTBEAT",
        re.search(rb"> HEARTBEAT\x1b\[0;90;49m", raw) is not None,
        repr(raw[:400]),
    )

    print(f"redis_cli_check: {c.passed} checks passed, {len(c.failed)} failed ({version})")
    if c.failed:
        print("interactive transcript:\n" + transcript)
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
