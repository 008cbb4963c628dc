"""WebSocket fan-out: 5,000 clients on one channel, a publisher at a fixed rate, Nuvem vs Node `ws`.

    (cd bench && npm install)          # once: the `ws` package for bench/node_ws_server.js
    python bench/fanout.py [--clients 5000] [--rates 5,20] [--seconds 8] [--rounds 3] [--procs 2]

Method (the same for both servers, in the same run):
- Server: Nuvem is `nuvem-realtime serve` in a subprocess on a throwaway Postgres (every message
  gets an offset and is committed to history before fan-out, as in production); Node is
  bench/node_ws_server.js (parse, number, stringify once, `client.send` to every client).
- Load: `--procs` processes each hold clients/procs WebSocket connections on a raw asyncio
  protocol (minimal frame parsing, no per-message JSON decode) so the clients cost little CPU.
  Every client joins the channel and waits for its ack before the measurement.
- Publisher: one more connection sends `publish` frames at the fixed rate, each payload carrying
  its send time; a receiver's latency is receive time - send time (one machine, one clock).
- Per rate: deliveries/s = deliveries / (last delivery - first publish); p50/p99 over every
  delivery. A run waits up to 10 s after the last publish for stragglers and counts missing ones.
- Rounds: each round starts both servers afresh, alternating which goes first (the machine is
  shared); the summary is the median per (server, rate) over the rounds.
Prints one line per (server, rate, round), the medians and the ratio Nuvem/Node of deliveries/s
and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing as mp
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHANNEL = "bench:fanout"


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ a minimal WebSocket client


def _client_frame(text: bytes) -> bytes:
    # masked with a zero key (valid; the payload bytes stay as they are)
    n = len(text)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + text


class WSClient(asyncio.Protocol):
    def __init__(self, host: str, port: int, path: str, stats: "Stats | None") -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.stats = stats
        self.buf = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.acked = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        for f in (self.open, self.acked):
            if not f.done():
                f.set_exception(ConnectionError(f"connection lost: {exc}"))
        if self.stats is not None:
            self.stats.lost += 1

    def send(self, text: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_client_frame(text))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in buf[:end].split(b"\r\n", 1)[0]:
                self.open.set_exception(ConnectionError(bytes(buf[:end]).decode(errors="replace")))
                return
            del buf[:end + 4]
            self.upgraded = True
            self.open.set_result(None)
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            n = buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            if size - pos < head + n:
                break
            opcode = buf[pos] & 0x0F
            start = pos + head
            pos = start + n
            if opcode == 1:
                self._on_text(buf, start, pos)
            elif opcode == 9 and self.transport is not None:   # ping -> pong
                self.transport.write(b"\x8a\x80\x00\x00\x00\x00")
        if pos:
            del buf[:pos]

    def _on_text(self, buf: bytearray, start: int, end: int) -> None:
        i = buf.find(b'"ts":', start, end)
        if i >= 0:
            if self.stats is not None:
                j = i + 5
                k = j
                while buf[k] not in b",}":
                    k += 1
                self.stats.record(time.time(), float(buf[j:k]))
        elif not self.acked.done() and buf.find(b'"ack"', start, end) >= 0:
            self.acked.set_result(None)


class Stats:
    def __init__(self) -> None:
        self.latencies = array("d")
        self.first = 0.0
        self.last = 0.0
        self.lost = 0

    def record(self, now: float, sent: float) -> None:
        if not self.latencies:
            self.first = now
        self.last = now
        self.latencies.append(now - sent)


async def connect(host: str, port: int, path: str, stats: Stats | None) -> WSClient:
    loop = asyncio.get_running_loop()
    for attempt in range(20):
        try:
            _, proto = await loop.create_connection(lambda: WSClient(host, port, path, stats), host, port)
            await asyncio.wait_for(proto.open, 30)
            return proto
        except (ConnectionError, OSError, asyncio.TimeoutError):
            if attempt == 19:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ load processes


def receiver_process(port: int, path: str, count: int, pipe) -> None:  # type: ignore[no-untyped-def]
    raise_nofile()
    run(_receivers(port, path, count, pipe))


def run(coro) -> None:  # type: ignore[no-untyped-def]
    """asyncio.run, on uvloop when installed (cheaper per received frame for the load clients)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


async def _receivers(port: int, path: str, count: int, pipe) -> None:  # type: ignore[no-untyped-def]
    stats = Stats()
    clients: list[WSClient] = []
    sem = asyncio.Semaphore(100)

    async def one(i: int) -> None:
        async with sem:
            c = await connect("127.0.0.1", port, path, stats)
            c.send(b'{"type":"join","ref":1,"channel":"' + CHANNEL.encode() + b'"}')
            await asyncio.wait_for(c.acked, 60)
            clients.append(c)

    await asyncio.gather(*(one(i) for i in range(count)))
    pipe.send(("ready", len(clients)))
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, pipe.recv)
        if cmd == "reset":
            stats.latencies = array("d")
            stats.first = stats.last = 0.0
            pipe.send("ok")
        elif cmd == "report":
            pipe.send((stats.latencies.tobytes(), stats.first, stats.last, stats.lost))
        elif cmd == "count":
            pipe.send(len(stats.latencies))
        elif cmd == "stop":
            for c in clients:
                if c.transport is not None:
                    c.transport.close()
            return


# ------------------------------------------------------------------ servers


def start_nuvem(port: int, dsn: str, log: Path, profile: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NUVEM_HEARTBEAT_TIMEOUT="3600", NUVEM_SEND_QUEUE_MAX_MESSAGES="100000",
               PYTHONPATH=str(ROOT))
    prof = ["-m", "cProfile", "-o", profile] if profile else []
    return subprocess.Popen([sys.executable, *prof, "-m", "gateway.cli", "serve", "--database-url", dsn,
                             "--port", str(port)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def start_node(port: int, log: Path) -> subprocess.Popen[bytes]:
    node = shutil.which("node")
    if node is None:
        sys.exit("node not found: install Node.js 20")
    if not (ROOT / "bench" / "node_modules" / "ws").exists():
        sys.exit("the ws package is missing: run `npm install` in bench/")
    return subprocess.Popen([node, str(ROOT / "bench" / "node_ws_server.js"), str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    sys.exit(f"server did not listen on {port} within {timeout} s")


async def make_key(dsn: str) -> str:
    from psycopg_pool import AsyncConnectionPool

    from gateway.keys import KeyStore
    from gateway.migrate import migrate

    await migrate(dsn)
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        key, _ = await KeyStore(pool).create(plan="scale")
    return key


# ------------------------------------------------------------------ one measurement


async def measure(name: str, port: int, path: str, clients: int, procs: int, rates: list[float],
                  seconds: float) -> list[dict]:
    pipes, workers = [], []
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    t0 = time.monotonic()
    for n in per:
        parent, child = mp.Pipe()
        p = mp.Process(target=receiver_process, args=(port, path, n, child), daemon=True)
        p.start()
        pipes.append(parent)
        workers.append(p)
    loop = asyncio.get_running_loop()
    ready = [await loop.run_in_executor(None, p.recv) for p in pipes]
    connected = sum(r[1] for r in ready)
    print(f"  {name}: {connected} clients joined in {time.monotonic() - t0:.1f} s", flush=True)

    publisher = await connect("127.0.0.1", port, path, None)
    rows = []
    for rate in rates:
        for p in pipes:
            p.send("reset")
            await loop.run_in_executor(None, p.recv)
        total = int(rate * seconds)
        first_send = time.time()
        start = time.monotonic()
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            publisher.send(b'{"type":"publish","ref":%d,"channel":"%s","event":"tick","payload":{"seq":%d,"ts":%.6f}}'
                           % (i, CHANNEL.encode(), i, time.time()))
        expected = total * connected
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = 0
            for p in pipes:
                p.send("count")
                got += await loop.run_in_executor(None, p.recv)
            if got >= expected:
                break
            await asyncio.sleep(0.2)
        lat = array("d")
        first, last, lost = float("inf"), 0.0, 0
        for p in pipes:
            p.send("report")
            raw, f, l, lo = await loop.run_in_executor(None, p.recv)
            part = array("d")
            part.frombytes(raw)
            lat.extend(part)
            if part:
                first, last = min(first, f), max(last, l)
            lost += lo
        delivered = len(lat)
        q = statistics.quantiles(lat, n=100) if delivered > 1 else [float("nan")] * 99
        row = {"server": name, "rate": rate, "clients": connected, "published": total,
               "delivered": delivered, "missing": expected - delivered, "disconnected": lost,
               "deliveries_per_s": delivered / (last - first_send) if delivered else 0.0,
               "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}
        rows.append(row)
        print(f"  {name:6} rate {rate:6.0f}/s: {row['deliveries_per_s']:10,.0f} deliveries/s  "
              f"p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  missing {row['missing']}  "
              f"disconnected {lost}", flush=True)
        await asyncio.sleep(1)
    for p in pipes:
        p.send("stop")
    for w in workers:
        w.join(10)
        if w.is_alive():
            w.kill()
    if publisher.transport is not None:
        publisher.transport.close()
    return rows


async def run_node(args: argparse.Namespace, rates: list[float], logs: Path) -> list[dict]:
    port = free_port()
    proc = start_node(port, logs / "node.log")
    try:
        await wait_port(port, proc)
        return await measure("node", port, "/", args.clients, args.procs, rates, args.seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


async def run_nuvem(args: argparse.Namespace, rates: list[float], logs: Path, dsn: str, key: str) -> list[dict]:
    port = free_port()
    proc = start_nuvem(port, dsn, logs / "nuvem.log", args.profile)
    try:
        await wait_port(port, proc)
        return await measure("nuvem", port, f"/v1/realtime/ws?apiKey={key}", args.clients, args.procs, rates,
                             args.seconds)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _median_row(rows: list[dict]) -> dict:
    out = dict(rows[0])
    for k in ("deliveries_per_s", "p50_ms", "p99_ms"):
        out[k] = statistics.median(r[k] for r in rows)
    out["missing"] = max(r["missing"] for r in rows)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--rates", default="5,20", help="publish rates (messages/s), comma separated")
    ap.add_argument("--seconds", type=float, default=8.0, help="publishing time per rate")
    ap.add_argument("--procs", type=int, default=2, help="load client processes")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the servers alternate who goes first")
    ap.add_argument("--only", choices=["nuvem", "node"], default=None)
    ap.add_argument("--profile", default=None, help="run the Nuvem server under cProfile, writing this file")
    args = ap.parse_args()
    raise_nofile()
    rates = [float(r) for r in args.rates.split(",")]

    from cdc.local_postgres import LocalPostgres

    logs = Path(os.environ.get("TMPDIR", "/tmp")) / "nuvem-bench-fanout"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"fan-out: {args.clients} clients, rates {rates}/s for {args.seconds:g} s each, {args.rounds} rounds, "
          f"{args.procs} load processes, {os.cpu_count()} cores", flush=True)
    results: dict[str, list[list[dict]]] = {"node": [], "nuvem": []}
    with LocalPostgres() as pg:
        key = await make_key(pg.dsn)
        for rnd in range(args.rounds):
            order = ["node", "nuvem"] if rnd % 2 == 0 else ["nuvem", "node"]
            for name in order:
                if args.only not in (None, name):
                    continue
                print(f"round {rnd + 1}: {name}", flush=True)
                rows = (await run_node(args, rates, logs) if name == "node"
                        else await run_nuvem(args, rates, logs, pg.dsn, key))
                results[name].append(rows)

    medians = {name: [_median_row([r[i] for r in runs]) for i in range(len(rates))]
               for name, runs in results.items() if runs}
    print(f"\nmedian of {args.rounds} rounds:")
    for name, rows in medians.items():
        for row in rows:
            print(f"  {name:6} rate {row['rate']:6.0f}/s: {row['deliveries_per_s']:10,.0f} deliveries/s  "
                  f"p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  missing (worst) {row['missing']}")
    if len(medians) == 2:
        print("ratio nuvem/node (deliveries/s: higher is better; p99: lower is better):")
        for ours, peer in zip(medians["nuvem"], medians["node"]):
            print(f"  rate {ours['rate']:6.0f}/s: deliveries/s x{ours['deliveries_per_s'] / peer['deliveries_per_s']:.2f}"
                  f"   p99 {ours['p99_ms']:.1f} ms vs {peer['p99_ms']:.1f} ms (x{ours['p99_ms'] / peer['p99_ms']:.2f})")


if __name__ == "__main__":
    run(main())
