"""Cost of the API's per-request middleware: metrics, request id and the JSON request log line.

    .venv/bin/python -m bench.request_log [--rounds 3] [--duration 4] [--concurrency 32]

Serves a trivial FastAPI app (``GET /async``: an ``async def`` route, ``GET /sync``: a ``def`` route run
in the threadpool, both answering a small dict) with ``api.serve.uvicorn_options`` (h11, no access
log, …) in three server processes, each with stdout/stderr redirected to a file as a container
runtime collects them, logging configured like ``api.main.configure_api_logging``
(``configure_logging`` + ``RequestContextFilter``):

    A. the bare app, no middleware (log level INFO) — the baseline;
    B. the app + ``api.metrics.MetricsMiddleware``, log level WARNING (metrics and X-Request-ID only);
    C. the app + ``MetricsMiddleware``, log level INFO (plus one JSON request line per request).

Each round measures every endpoint on A, B and C in turn (the order rotates each round) at
``--concurrency`` keep-alive clients (``bench.loadgen``); the table shows the median of the rounds:
req/s, p50, p99, the server process's CPU per request, the log bytes per request, the ratios B/A and
C/A and the per-request cost against A, both as 1/rate and as server CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import loadgen
from bench.cli import stop_on_sigterm
from devstack.processes import ManagedProcess, free_port

ENDPOINTS = ("async", "sync")
VARIANTS = {
    "A": "bare app (no middleware)",
    "B": "MetricsMiddleware, log WARNING",
    "C": "MetricsMiddleware, JSON log INFO",
}


def say(text: str) -> None:
    """Progress on stdout at once."""
    print(text, flush=True)


# --- the server side (``python -m bench.request_log --serve VARIANT --port N``) ---------------------


def serve(variant: str, port: int) -> None:
    """Run the variant's app under uvicorn with the API's options until SIGTERM."""
    import uvicorn
    from fastapi import FastAPI

    from api.metrics import MetricsMiddleware
    from api.request_context import RequestContextFilter
    from api.serve import uvicorn_options
    from config import Settings
    from config.logging import configure_logging

    settings = Settings(
        env="test", log_level="WARNING" if variant == "B" else "INFO", log_format="json", api_port=port
    )
    configure_logging(settings, RequestContextFilter())  # what configure_api_logging does, minus Temporal

    app = FastAPI()

    @app.get("/async")
    async def async_route() -> dict[str, object]:
        return {"ok": True, "answer": 42, "name": "sosohappy"}

    @app.get("/sync")
    def sync_route() -> dict[str, object]:
        return {"ok": True, "answer": 42, "name": "sosohappy"}

    if variant != "A":
        app.add_middleware(MetricsMiddleware)
    uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings))).run()


# --- the driver --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One measurement of one endpoint on one variant."""

    rate: float
    p50: float
    p99: float
    cpu_us: float  # server process CPU per answered request, microseconds
    log_bytes: float  # growth of the server's log file per answered request
    errors: int


@dataclass
class Cell:
    """Every round of one endpoint × variant."""

    runs: list[Run] = field(default_factory=list)

    def median(self, name: str) -> float:
        return statistics.median(getattr(run, name) for run in self.runs)

    def spread(self) -> str:
        rates = [run.rate for run in self.runs]
        return f"{min(rates):.0f}-{max(rates):.0f}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``); NaN when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def load() -> str:
    """The load averages of the machine."""
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def start(work: Path) -> dict[str, tuple[ManagedProcess, int]]:
    """One server process per variant, listening."""
    servers: dict[str, tuple[ManagedProcess, int]] = {}
    try:
        for variant in VARIANTS:
            port = free_port()
            argv = [sys.executable, "-m", "bench.request_log", "--serve", variant, "--port", str(port)]
            proc = ManagedProcess(f"server {variant}", argv, work / f"{variant}.log").start()
            servers[variant] = (proc, port)
            proc.wait_for_port(port, timeout=60)
    except BaseException:
        stop(servers)
        raise
    return servers


def stop(servers: dict[str, tuple[ManagedProcess, int]]) -> None:
    for proc, _ in servers.values():
        proc.stop()


def check(servers: dict[str, tuple[ManagedProcess, int]]) -> None:
    """Each endpoint answers 200 with the same body everywhere; X-Request-ID only behind the middleware."""
    for variant, (_, port) in servers.items():
        for endpoint in ENDPOINTS:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{endpoint}", timeout=5) as resp:
                body, has_id = resp.read(), resp.headers.get("X-Request-ID") is not None
            if body != b'{"ok":true,"answer":42,"name":"sosohappy"}' or has_id != (variant != "A"):
                raise SystemExit(f"{variant} /{endpoint}: unexpected answer {body!r}, X-Request-ID {has_id}")


def measure(proc: ManagedProcess, port: int, endpoint: str, args: argparse.Namespace) -> Run:
    """One loadgen run against ``port``; the server's CPU and log growth over the whole run."""
    assert proc.proc is not None
    pid = proc.proc.pid
    request = [(endpoint, loadgen.get(f"/{endpoint}"))]
    cpu0, size0 = cpu_seconds(pid), proc.log_path.stat().st_size
    result = loadgen.run(
        port, request, concurrency=args.concurrency, warmup=args.warmup, duration=args.duration
    )
    cpu1, size1 = cpu_seconds(pid), proc.log_path.stat().st_size
    done = max(result.completed, 1)
    for sample in result.samples:
        say(f"    ERROR {sample}")
    return Run(
        rate=result.rate,
        p50=result.pct(0.5),
        p99=result.pct(0.99),
        cpu_us=1e6 * (cpu1 - cpu0) / done,
        log_bytes=(size1 - size0) / done,
        errors=result.errors,
    )


def report(cells: dict[tuple[str, str], Cell], servers: dict[str, tuple[ManagedProcess, int]]) -> None:
    """The medians of the rounds with the ratios and per-request costs against A."""
    say("")
    say(
        f"{'endpoint':8s} {'variant':36s} {'req/s':>7s} {'(range)':>11s} {'p50 ms':>7s} {'p99 ms':>7s} "
        f"{'CPU µs/req':>10s} {'log B/req':>9s}  {'X/A rate':>8s} {'Δ 1/rate µs':>11s} {'Δ CPU µs':>8s}"
    )
    for endpoint in ENDPOINTS:
        base = cells[(endpoint, "A")]
        base_rate, base_cpu = base.median("rate"), base.median("cpu_us")
        for variant, label in VARIANTS.items():
            cell = cells[(endpoint, variant)]
            rate, cpu = cell.median("rate"), cell.median("cpu_us")
            ratio = f"{rate / base_rate:8.3f}" if variant != "A" else f"{'1':>8s}"
            extra = 1e6 * (1 / rate - 1 / base_rate) if variant != "A" else 0.0
            say(
                f"/{endpoint:7s} {variant}. {label:33s} {rate:7.0f} {cell.spread():>11s} "
                f"{cell.median('p50'):7.2f} {cell.median('p99'):7.2f} {cpu:10.1f} "
                f"{cell.median('log_bytes'):9.1f}  {ratio} {extra:11.1f} {cpu - base_cpu:8.1f}"
            )
    say(
        "(medians of the rounds; range = min-max req/s; X/A rate = the row's req/s over A's; "
        "Δ 1/rate = 1e6·(1/rate − 1/rate_A), the wall time per request the server added at saturation; "
        "Δ CPU = the server process's CPU per request minus A's; log B/req = growth of the server's "
        "stdout/stderr file per request, warm-up included)"
    )
    if any(run.errors for cell in cells.values() for run in cell.runs):
        say("SOME REQUESTS FAILED: these figures are not valid (see the ERROR lines above)")
    lines = servers["C"][0].log_path.read_text(errors="replace").splitlines()
    sample = next((line for line in reversed(lines) if '"http_request"' in line), None)
    if sample is not None:
        say(f"a request line of C ({len(sample.encode()) + 1} bytes with its newline):")
        say(f"  {sample}")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.request_log", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A, B, C per endpoint (default 3)")
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per run (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--serve", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if args.serve:
        serve(args.serve, args.port)
        return
    stop_on_sigterm()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-request-log-"))
    per_run = args.warmup + args.duration
    total = args.rounds * len(ENDPOINTS) * len(VARIANTS) * per_run
    say(f"{load()} at start; server logs in {work}")
    say(f"starting the servers A, B and C ({', '.join(f'{v} = {label}' for v, label in VARIANTS.items())})")
    servers = start(work)
    try:
        check(servers)
        cells = {(e, v): Cell() for e in ENDPOINTS for v in VARIANTS}
        order = list(VARIANTS)
        say(
            f"measuring {args.rounds} rounds × {len(ENDPOINTS)} endpoints × A, B, C at {args.concurrency} "
            f"connections, {args.warmup:g} s warm-up + {args.duration:g} s each: about {total:.0f} s"
        )
        for round_no in range(args.rounds):
            rotated = order[round_no % len(order) :] + order[: round_no % len(order)]
            for endpoint in ENDPOINTS:
                for variant in rotated:
                    proc, port = servers[variant]
                    run = measure(proc, port, endpoint, args)
                    cells[(endpoint, variant)].runs.append(run)
                    say(
                        f"  round {round_no + 1}/{args.rounds} /{endpoint:5s} {variant}: {run.rate:6.0f}/s  "
                        f"p50 {run.p50:5.2f} ms  p99 {run.p99:5.2f} ms  CPU {run.cpu_us:5.1f} µs/req  "
                        f"log {run.log_bytes:5.1f} B/req"
                    )
        report(cells, servers)
    finally:
        stop(servers)
        say(f"{load()} at end; total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
