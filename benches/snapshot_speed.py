"""Snapshot and load speed of presenced beside the disk's own sequential speed (dd), and the
heartbeat p99 latency with and without snapshots running.

    python3 benches/snapshot_speed.py [--users N]      (default 100,000,000; needs release builds)
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vs_redis import LOADGEN, PRESENCED, free_port, wait_port  # noqa: E402


def dd_speed(directory):
    path = os.path.join(directory, "dd.bin")
    write = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=2048", "conv=fdatasync"],
                           capture_output=True, text=True).stderr
    read = subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "iflag=direct"],
                          capture_output=True, text=True).stderr
    os.remove(path)

    def rate(text):
        m = re.search(r"([\d.,]+) ([MG])B/s", text)
        if not m:
            return None
        value = float(m.group(1).replace(",", "."))
        return value * (1000 if m.group(2) == "G" else 1)

    return rate(write), rate(read), write.strip().splitlines()[-1], read.strip().splitlines()[-1]


def command(port, *args):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)).encode())
    s.settimeout(600)
    data = b""
    while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode(errors="replace")


def info_field(port, field):
    text = command(port, "INFO", "persistence")
    m = re.search(rf"^{field}:(.*)\r?$", text, re.M)
    return m.group(1).strip() if m else None


def start(directory, port):
    proc = subprocess.Popen(["taskset", "-c", "0", PRESENCED, "--port", str(port), "--threads", "1",
                             "--dir", directory, "--snapshot-interval", "0", "--ttl", "86400",
                             "--capacity", str(1 << 32), "--log-level", "warn"])
    wait_port(port, timeout=1800)
    return proc


def heartbeat_p99(port, pid, users, seconds):
    out = subprocess.run(["taskset", "-c", "1", LOADGEN, "--target", "presenced", "--port", str(port),
                          "--server-pid", str(pid), "--scenario", "heartbeat", "--users", str(users),
                          "--duration-s", str(seconds), "--csv"], capture_output=True, text=True, check=True)
    header, row = out.stdout.strip().splitlines()[-2:]
    values = dict(zip(header.split(","), row.split(",")))
    return float(values["p99_us"]), float(values["ops_per_s"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000_000)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="snapshot-speed-", dir=os.getcwd())
    try:
        dd_write, dd_read, dd_write_line, dd_read_line = dd_speed(directory)
        print(f"dd write: {dd_write_line}\ndd read:  {dd_read_line}", flush=True)
        port = free_port()
        proc = start(directory, port)
        subprocess.run(["taskset", "-c", "1", LOADGEN, "--target", "presenced", "--port", str(port),
                        "--scenario", "populate", "--users", str(args.users), "--batch", "1000",
                        "--csv"], check=True, capture_output=True)
        print(f"populated {args.users:,} users", flush=True)
        assert command(port, "SAVE").startswith("+OK")
        size = int(info_field(port, "snapshot_last_bytes"))
        save_ms = int(info_field(port, "snapshot_last_duration_ms"))
        print(f"snapshot: {size / 1e6:,.0f} MB in {save_ms} ms = {size / 1e6 / (save_ms / 1000):,.0f} MB/s", flush=True)

        quiet_p99, quiet_rate = heartbeat_p99(port, proc.pid, args.users, 10)
        stop = threading.Event()
        saves = []

        def saver():
            # BGSAVE, as the periodic snapshots run: off the serving thread. (SAVE blocks its
            # connection's thread, as Redis's SAVE blocks the server.)
            while not stop.is_set():
                if command(port, "BGSAVE").startswith("+"):
                    while info_field(port, "rdb_bgsave_in_progress") == "1":
                        time.sleep(0.005)
                    saves.append(int(info_field(port, "snapshot_last_duration_ms")))
        thread = threading.Thread(target=saver)
        thread.start()
        busy_p99, busy_rate = heartbeat_p99(port, proc.pid, args.users, 10)
        stop.set()
        thread.join()
        print(f"heartbeat p99 without snapshots {quiet_p99:,.0f} µs ({quiet_rate:,.0f}/s); "
              f"during back-to-back background snapshots {busy_p99:,.0f} µs ({busy_rate:,.0f}/s), {len(saves)} snapshots",
              flush=True)

        command(port, "SHUTDOWN", "NOSAVE")
        proc.wait(60)
        port = free_port()
        started = time.time()
        proc = start(directory, port)
        wall_ms = (time.time() - started) * 1000
        load_ms = int(info_field(port, "snapshot_load_duration_ms"))
        loaded = int(info_field(port, "snapshot_loaded_bytes"))
        print(f"load: {loaded / 1e6:,.0f} MB in {load_ms} ms = {loaded / 1e6 / (load_ms / 1000):,.0f} MB/s "
              f"(start to listening {wall_ms:,.0f} ms)", flush=True)
        command(port, "SHUTDOWN", "NOSAVE")
        proc.wait(60)
        print()
        print("| measure | presenced | disk (dd) |")
        print("|---|---|---|")
        print(f"| snapshot of {args.users:,} users ({size / 1e6:,.0f} MB) | {save_ms / 1000:.2f} s, "
              f"{size / 1e6 / (save_ms / 1000):,.0f} MB/s | sequential write {dd_write:,.0f} MB/s |")
        print(f"| load | {load_ms / 1000:.2f} s, {loaded / 1e6 / (load_ms / 1000):,.0f} MB/s "
              f"| sequential read {dd_read:,.0f} MB/s |")
        print(f"| heartbeat p99 | {quiet_p99:,.0f} µs quiet, {busy_p99:,.0f} µs during snapshots | |")
    finally:
        subprocess.run(["rm", "-rf", directory])


if __name__ == "__main__":
    main()
