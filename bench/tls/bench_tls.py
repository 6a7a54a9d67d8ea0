"""HTTPS and HTTP/2, side by side in one run (docs/benchmarks.md, "HTTPS and HTTP/2"):

1. the mock's plain HTTP/1.1 path, this tree against a base ref (default ``main``,
   exported with ``git archive``), wrk -c8, alternating rounds;
2. the HTTPS mock against nginx HTTPS (wrk over TLS, HTTP/1.1 keep-alive);
3. HTTP/2: h2load against the mock (TLS with ALPN h2, and h2c) and against nginx;
4. recording through the TLS-intercepting forward proxy (``devbox record
   --forward-proxy``) against mitmdump as a forward proxy, both as a plain proxy and
   recording its flows to a file (``-w``), the same HTTPS workload to the
   same nginx (a client doing CONNECT + TLS + keep-alive GETs): throughput with 8
   connections, the p50 a proxy adds on one reused connection, and the CPU each process
   (the proxy with its children, nginx's workers, this client) spent per request; both
   proxies run throughout and are measured in ``--rounds`` alternating rounds (medians,
   and the ratio of each round). Beside them, the floor (``floor_relay.py``): a Python
   TLS-intercepting relay on the same loop that records nothing, which bounds what any
   Python proxy here can reach. Each round also runs ``lean_client.py`` (the same
   workload as a bare Protocol, about half the client CPU) through each proxy, and the
   lean client again asking for 1,000 distinct paths in turn, each answered with its own
   body (so nothing devbox remembers of repeated bytes helps);
5. the same through devbox's proxy and mitmdump with an HTTP/2 client (curl ``--http2
   --parallel``: 8 streams on one connection; the floor offers http/1.1 only), in
   alternating rounds, with each proxy's CPU per request.

    .venv/bin/python bench/tls/bench_tls.py                       # ~3 minutes
    .venv/bin/python bench/tls/bench_tls.py --seconds 2 --rounds 1 --skip-mitm

Needs nginx, wrk, h2load and curl (scripts/setup) and mitmproxy in .tools/mitmproxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import lean_client  # noqa: E402
from nginx_support import ITEM, Nginx, nginx  # noqa: E402

from devbox.core.model import Direction, Exchange, Request, Response, Timing  # noqa: E402
from devbox.store import write_recording  # noqa: E402

PY = sys.executable
# the distinct-requests rounds: no request or answer repeats within this many, so what
# devbox remembers of repeated bytes (streams.Seen, the redactor's clean bodies) is no help
DISTINCT_PATHS = 1000
# each /things/ path answered with a JSON body naming it (nginx's $uri)
THINGS = (
    "location /things/ { default_type application/json; "
    """return 200 '{"id": "$uri", "name": "widget", "price": 9.99}'; }"""
)
MITMDUMP = ROOT / ".tools" / "mitmproxy" / "bin" / "mitmdump"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing on {port}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """``pid`` and its children (devbox record's recording worker)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(k) for k in kids)]


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextmanager
def started(
    args: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(  # noqa: S603
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=env and env.get("CWD"),
    )
    try:
        wait_port(port, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(url: str, seconds: int) -> float:
    out = subprocess.run(  # noqa: S603
        ["wrk", "-t1", "-c8", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def h2load(url: str, n: int) -> float:
    out = subprocess.run(  # noqa: S603
        ["h2load", "-n", str(n), "-c", "8", "-m", "10", "-t", "1", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    ok = re.search(r"(\d+) succeeded", out)
    if not m or not ok or int(ok.group(1)) != n:
        raise RuntimeError(f"h2load against {url} did not succeed:\n{out[-800:]}")
    return float(m.group(1))


def curl_h2(proxy: int, cafile: Path, url: str, n: int, d: Path) -> float:
    """Requests per second of ``n`` GETs by curl through the forward proxy ``proxy``:
    ``CONNECT``, TLS with ALPN h2, then every request a stream of one HTTP/2 connection,
    8 at a time (``--parallel`` multiplexes). h2load cannot use a proxy; curl is the
    HTTP/2 client most services' tooling shares (libcurl, nghttp2)."""
    cfg = d / "curl-h2.cfg"
    cfg.write_text(f'url = "{url}"\noutput = "/dev/null"\n' * n)
    args = [
        "curl", "-sS", "--http2", "--parallel", "--parallel-max", "8", "--fail",
        "--cacert", str(cafile), "-x", f"http://127.0.0.1:{proxy}", "-K", str(cfg),
    ]  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)  # noqa: S603
    took = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"curl --http2 through :{proxy} failed: {done.stderr[-400:]}")
    return n / took


def recording(d: Path) -> Path:
    ex = Exchange(
        id="bench-1",
        direction=Direction.OUTBOUND,
        source="bench",
        request=Request("GET", "/items/1", (), (), b"", host="localhost"),
        response=Response(200, (("Content-Type", "application/json"),), ITEM),
        timing=Timing(started_at=1.7e9, duration_ms=1.0),
    )
    return write_recording(d / "bench.json", "bench", Direction.OUTBOUND, [ex])


def base_tree(ref: str, d: Path) -> Path:
    """``ref``'s devbox package, exported (never a checkout of the working tree)."""
    out = d / "base"
    out.mkdir()
    tar = subprocess.run(  # noqa: S603
        ["git", "-C", str(ROOT), "archive", ref, "devbox"], capture_output=True, check=True
    ).stdout
    tf = d / "base.tar"
    tf.write_bytes(tar)
    with tarfile.open(tf) as t:
        t.extractall(out, filter="data")
    return out


def mock_cmd(tree: Path, rec: Path, port: int) -> list[str]:
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        "from devbox.cli.main import main; sys.exit(main())"
    )
    return [PY, "-c", code, "mock", "--recording", str(rec), "--port", str(port), "--no-reload"]


# ---------------------------------------------------------------- the proxy client


async def _connection(
    proxy: int | None,
    n: Nginx,
    ctx: ssl.SSLContext,
    stop_at: float,
    lat: list[float] | None,
    limit: int,
) -> int:
    host = f"localhost:{n.tls_port}"
    req = f"GET /items/1 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    if proxy is None:
        r, w = await asyncio.open_connection(
            "127.0.0.1", n.tls_port, ssl=ctx, server_hostname="localhost"
        )
    else:
        r, w = await asyncio.open_connection("127.0.0.1", proxy)
        w.write(f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await r.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"CONNECT refused: {head[:80]!r}")
        await w.start_tls(ctx, server_hostname="localhost")
    done = 0
    try:
        while done < limit and time.monotonic() < stop_at:
            t0 = time.perf_counter()
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            body = await r.readexactly(length)
            if lat is not None:
                lat.append((time.perf_counter() - t0) * 1000)
            assert body == ITEM
            done += 1
    finally:
        w.close()
    return done


def proxy_run(
    proxy: int | None, n: Nginx, cafile: Path, seconds: float
) -> tuple[float, float, int]:
    """(requests per second with 8 connections, p50 ms on one reused connection, every
    request sent, warm-up included)."""
    import uvloop

    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["http/1.1"])

    async def go() -> tuple[float, float, int]:
        # warm-up: leaves generated, connections to the upstream open
        warm = await _connection(proxy, n, ctx, time.monotonic() + 5, None, 50)
        t0 = time.monotonic()
        counts = await asyncio.gather(
            *(_connection(proxy, n, ctx, t0 + seconds, None, 10**9) for _ in range(8))
        )
        rate = sum(counts) / (time.monotonic() - t0)
        lat: list[float] = []
        await _connection(proxy, n, ctx, time.monotonic() + seconds, lat, 3000)
        return rate, statistics.median(lat), warm + sum(counts) + len(lat)

    return uvloop.run(go())


def lean_run(proxy: int, n: Nginx, cafile: Path, seconds: float, distinct: int = 0) -> float:
    """Requests per second through ``proxy`` with the lean client (lean_client.py);
    ``distinct``: that many distinct paths and answers in turn."""
    import uvloop

    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["http/1.1"])
    return uvloop.run(lean_client.throughput(proxy, n.tls_port, ctx, seconds, distinct))


def measured(
    pid: int, n: Nginx, run: Callable[[], tuple[float, float, int]]
) -> tuple[tuple[float, float], tuple[float, float, float]]:
    """``run``'s (req/s, p50) and the CPU per request, in µs, of the proxy ``pid`` (with
    its children), of nginx's workers and of this benchmark client."""
    procs = family(pid)
    ngx = family(n.pid)[1:]  # the workers, not the master
    p0, g0, c0 = sum(map(cpu_s, procs)), sum(map(cpu_s, ngx)), self_cpu_s()
    rate, p50, count = run()
    p1, g1, c1 = sum(map(cpu_s, procs)), sum(map(cpu_s, ngx)), self_cpu_s()
    per = 1e6 / max(count, 1)
    return (rate, p50), ((p1 - p0) * per, (g1 - g0) * per, (c1 - c0) * per)


def record_profile(d: Path, n: Nginx) -> Path:
    (d / "profiles").mkdir(parents=True, exist_ok=True)
    p = d / "profiles" / "bench.toml"
    p.write_text(
        'name = "bench"\n[service]\nname = "svc"\nport = 1\ncommand = ["true"]\n'
        f'[[dependency]]\nname = "shop"\nupstream = "{n.url}"\n'
    )
    return p


def proxies(
    a: argparse.Namespace,
    d: Path,
    n: Nginx,
    env: dict[str, str],
    devbox_ca: Path,
    prof: Path,
    direct_p50: float,
    rows: list[tuple[str, str, str]],
) -> list[tuple[str, float, float, float]]:
    """Part 4: devbox's intercepting proxy and mitmdump, both running, measured in
    alternating rounds (the order swapped each round, so a busy moment of the machine
    falls on both alike); the median per proxy, the ratio per round. Returns the CPU rows."""
    secs = max(1, min(a.seconds, 30))
    rounds = max(1, min(a.rounds, 10))
    with contextlib.ExitStack() as stack:
        pport = free_port()
        rec_cmd = [
            PY, "-m", "devbox.cli.main", "record", str(prof), "--no-service",
            "--forward-proxy", str(pport), "--ca-bundle", str(n.ca_file),
        ]  # fmt: skip
        proc = stack.enter_context(started(rec_cmd, pport, {**env, "CWD": str(prof.parents[1])}))
        targets = {"devbox": (proc.pid, pport, devbox_ca)}
        fport = free_port()
        floor = Path(__file__).with_name("floor_relay.py")
        floor_cmd = [PY, str(floor), str(fport), str(n.ca_file)]
        fproc = stack.enter_context(started(floor_cmd, fport, env))
        targets["floor"] = (fproc.pid, fport, devbox_ca)
        if not a.skip_mitm and MITMDUMP.exists():
            mport = free_port()
            conf = d / "mitm"
            mitm_cmd = [
                str(MITMDUMP), "--listen-host", "127.0.0.1", "-p", str(mport), "-q",
                "--set", f"confdir={conf}",
                "--set", f"ssl_verify_upstream_trusted_ca={n.ca_file}",
            ]  # fmt: skip
            mproc = stack.enter_context(started(mitm_cmd, mport, env))
            targets["mitmdump"] = (mproc.pid, mport, conf / "mitmproxy-ca-cert.pem")
            # mitmproxy's own way of recording: every flow written to a file (-w), the
            # like-for-like comparison with devbox record; the same CA directory
            wport = free_port()
            mitm_w = [*mitm_cmd, "-w", str(d / "mitm.flows")]
            mitm_w[mitm_w.index(str(mport))] = str(wport)
            wproc = stack.enter_context(started(mitm_w, wport, env))
            targets["mitmdump -w"] = (wproc.pid, wport, conf / "mitmproxy-ca-cert.pem")
        got: dict[str, list[tuple[tuple[float, float], tuple[float, float, float]]]] = {}
        lean: dict[str, list[float]] = {}
        distinct: dict[str, list[float]] = {}
        h2got: dict[str, list[tuple[tuple[float, float], tuple[float, float, float]]]] = {}
        names = list(targets)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                pid, port, cafile = targets[name]
                got.setdefault(name, []).append(
                    measured(pid, n, functools.partial(proxy_run, port, n, cafile, secs))
                )
                lean.setdefault(name, []).append(lean_run(port, n, cafile, secs))
                distinct.setdefault(name, []).append(
                    lean_run(port, n, cafile, secs, DISTINCT_PATHS)
                )
        # 5. an HTTP/2 client through the two intercepting proxies (the floor offers
        # http/1.1 only), alternating as above; request counts sized to ~secs each
        url = f"https://localhost:{n.tls_port}/items/1"
        counts = {"devbox": 2500 * secs, "mitmdump": 600 * secs, "mitmdump -w": 600 * secs}
        h2names = [x for x in names if x in counts]
        for r in range(rounds):
            for name in h2names if r % 2 == 0 else h2names[::-1]:
                pid, port, cafile = targets[name]
                count = counts[name]

                def run(
                    port: int = port, cafile: Path = cafile, count: int = count
                ) -> tuple[float, float, int]:
                    return curl_h2(port, cafile, url, count, d), 0.0, count

                h2got.setdefault(name, []).append(measured(pid, n, run))
    med = {
        name: (
            statistics.median(x[0][0] for x in runs),
            statistics.median(x[0][1] for x in runs),
            tuple(statistics.median(x[1][i] for x in runs) for i in range(3)),
        )
        for name, runs in got.items()
    }
    dv = med["devbox"]
    rows.append(
        (
            "devbox record --forward-proxy (TLS intercepted)",
            f"{dv[0]:,.0f}",
            f"p50 {dv[1]:.3f} ms (+{dv[1] - direct_p50:.3f}), median of {rounds} rounds",
        )
    )
    cpu_rows = [("devbox record --forward-proxy", dv[2][0], dv[2][1], dv[2][2])]
    fl = med["floor"]
    rows.append(
        (
            "floor: TLS relay, nothing recorded",
            f"{fl[0]:,.0f}",
            f"p50 {fl[1]:.3f} ms (+{fl[1] - direct_p50:.3f}); devbox {dv[0] / fl[0]:.2f}x",
        )
    )
    cpu_rows.append(("floor (relay, no recording)", fl[2][0], fl[2][1], fl[2][2]))
    for mitm, what in (("mitmdump", "not recording"), ("mitmdump -w", "recording (-w)")):
        if mitm not in med:
            continue
        mt = med[mitm]
        per_round = [x[0][0] / y[0][0] for x, y in zip(got["devbox"], got[mitm], strict=True)]
        rows.append(
            (
                f"{mitm} (forward proxy, TLS intercepted, {what})",
                f"{mt[0]:,.0f}",
                f"p50 {mt[1]:.3f} ms (+{mt[1] - direct_p50:.3f}); devbox "
                f"{statistics.median(per_round):.1f}x (median of rounds: "
                + ", ".join(f"{x:.1f}" for x in per_round)
                + ")",
            )
        )
        cpu_rows.append((mitm, mt[2][0], mt[2][1], mt[2][2]))
    for mitm in ("mitmdump", "mitmdump -w"):
        if mitm not in lean:
            continue
        for label, runs in (
            ("the same, lean client (lean_client.py)", lean),
            (f"lean client, {DISTINCT_PATHS:,} distinct paths", distinct),
        ):
            per_round = [x / y for x, y in zip(runs["devbox"], runs[mitm], strict=True)]
            rows.append(
                (
                    f"{label}: {mitm}",
                    f"{statistics.median(runs[mitm]):,.0f}",
                    f"devbox {statistics.median(runs['devbox']):,.0f}, "
                    f"{statistics.median(per_round):.1f}x (rounds: "
                    + ", ".join(f"{x:.1f}" for x in per_round)
                    + f"); floor {statistics.median(runs['floor']):,.0f}",
                )
            )
    if h2got:
        h2med = {k: statistics.median(x[0][0] for x in v) for k, v in h2got.items()}
        h2cpu = {k: statistics.median(x[1][0] for x in v) for k, v in h2got.items()}
        rows.append(
            (
                "devbox record --forward-proxy, HTTP/2 client",
                f"{h2med['devbox']:,.0f}",
                "curl --http2 --parallel (8 streams, one connection); "
                f"proxy {h2cpu['devbox']:.0f} µs/req",
            )
        )
        for mitm in ("mitmdump", "mitmdump -w"):
            if mitm not in h2med:
                continue
            per_round = [
                x[0][0] / y[0][0] for x, y in zip(h2got["devbox"], h2got[mitm], strict=True)
            ]
            rows.append(
                (
                    f"{mitm}, HTTP/2 client",
                    f"{h2med[mitm]:,.0f}",
                    f"proxy {h2cpu[mitm]:.0f} µs/req; devbox "
                    f"{statistics.median(per_round):.1f}x (rounds: "
                    + ", ".join(f"{x:.1f}" for x in per_round)
                    + ")",
                )
            )
    return cpu_rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--h2-requests", type=int, default=30000)
    ap.add_argument("--base-ref", default="main")
    ap.add_argument("--skip-mitm", action="store_true")
    a = ap.parse_args()
    secs = max(1, min(a.seconds, 30))
    rounds = max(1, min(a.rounds, 10))
    for tool in ("wrk", "h2load", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} missing: run scripts/setup")
    with tempfile.TemporaryDirectory(prefix="devbox-bench-tls-") as tmp:
        d = Path(tmp)
        xdg = d / "xdg"
        env = {**os.environ, "XDG_DATA_HOME": str(xdg)}
        os.environ["XDG_DATA_HOME"] = str(xdg)
        from devbox.wire.ca import ensure_ca

        devbox_ca = ensure_ca()[1].cert
        rec = recording(d)
        base = base_tree(a.base_ref, d)
        rows: list[tuple[str, str, str]] = []
        with nginx(d / "nginx", server_opts=THINGS) as n:
            new_port, base_port = free_port(), free_port()
            with (
                started(mock_cmd(ROOT, rec, new_port), new_port, env),
                started(mock_cmd(base, rec, base_port), base_port, env),
            ):
                # 1. the plain path, before and after, alternating
                new_r, base_r = [], []
                for _ in range(rounds):
                    base_r.append(wrk(f"http://127.0.0.1:{base_port}/items/1", secs))
                    new_r.append(wrk(f"http://127.0.0.1:{new_port}/items/1", secs))
                nb, nn = statistics.median(base_r), statistics.median(new_r)
                rows.append((f"mock HTTP/1.1, {a.base_ref}", f"{nb:,.0f}", "wrk -t1 -c8"))
                rows.append(
                    ("mock HTTP/1.1, this tree", f"{nn:,.0f}", f"{nn / nb:.2f}x {a.base_ref}")
                )
                # 2. HTTPS (HTTP/1.1) against nginx HTTPS
                ng_https, mk_https = [], []
                for _ in range(rounds):
                    ng_https.append(wrk(f"https://127.0.0.1:{n.tls_port}/items/1", secs))
                    mk_https.append(wrk(f"https://127.0.0.1:{new_port}/items/1", secs))
                g, m = statistics.median(ng_https), statistics.median(mk_https)
                rows.append(("nginx HTTPS (HTTP/1.1)", f"{g:,.0f}", "wrk -t1 -c8, TLS"))
                rows.append(("mock HTTPS (HTTP/1.1)", f"{m:,.0f}", f"{m / g:.2f}x nginx"))
                # 3. HTTP/2
                hn = h2load(f"https://127.0.0.1:{n.tls_port}/items/1", a.h2_requests)
                hm = h2load(f"https://127.0.0.1:{new_port}/items/1", a.h2_requests)
                hc = h2load(f"http://127.0.0.1:{new_port}/items/1", a.h2_requests)
                hnc = h2load(f"http://127.0.0.1:{n.h2c_port}/items/1", a.h2_requests)
                h2args = "h2load -c8 -m10 -t1"
                rows.append(("nginx h2 (TLS)", f"{hn:,.0f}", h2args))
                rows.append(("mock h2 (TLS)", f"{hm:,.0f}", f"{hm / hn:.2f}x nginx"))
                rows.append(("nginx h2c", f"{hnc:,.0f}", h2args))
                rows.append(("mock h2c", f"{hc:,.0f}", f"{hc / hnc:.2f}x nginx"))
            # 4. the intercepting forward proxy against mitmproxy
            direct = proxy_run(None, n, n.ca_file, secs)[:2]
            rows.append(("client -> nginx direct", f"{direct[0]:,.0f}", f"p50 {direct[1]:.3f} ms"))
            prof = record_profile(d / "rec", n)
            cpu_rows = proxies(a, d, n, env, devbox_ca, prof, direct[1], rows)
    print(f"{'what':<48} {'req/s':>10}  notes")
    for what, rate, note in rows:
        print(f"{what:<48} {rate:>10}  {note}")
    print("\nCPU per request through each proxy (µs, /proc; the proxy's children included)")
    print(f"{'proxy':<32} {'proxy':>8} {'nginx':>8} {'client':>8} {'all':>8}")
    for name, proxy_us, nginx_us, client_us in cpu_rows:
        total = proxy_us + nginx_us + client_us
        print(f"{name:<32} {proxy_us:>8.1f} {nginx_us:>8.1f} {client_us:>8.1f} {total:>8.1f}")


if __name__ == "__main__":
    main()
