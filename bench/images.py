"""Image benchmark: peak memory of one API process while images are downloaded and uploaded, and
download throughput against a bare static-file endpoint, all in one run.

    .venv/bin/python -m bench.images [--clients 32] [--seconds 20] [--uploaders 8] [--entries 5]
                                     [--image-mib 25] [--deep-page 2000] [--skip-deep-page]

Migrates a throwaway MySQL database (``SOSOHAPPY_TEST_DATABASE_URL``, default the local MariaDB), seeds
users with logins by SQL, and starts the Kafka broker, one API process (``python -m api.serve``, the
container's command) and a bare static-file endpoint (Starlette's ``FileResponse`` under the same
uvicorn options, ``bench.image_load``). It samples the API process's ``VmRSS`` every 20 ms:

1. idle, after one small request (the baseline of the memory figures);
2. while ``--clients`` keep-alive clients download one stored ``--image-mib`` MiB image again and again
   (``--seconds`` measured after a warm-up), then the same clients on the static endpoint serving the
   same bytes from a file (the baseline of the throughput);
3. while ``--uploaders`` clients each save ``--entries`` entries with two such images (saveFeed).

Targets: peak RSS under 300 MiB above idle in both phases; API download throughput ≥ 0.7× the static
endpoint's. 4. The deep-page latency of findOtherFeed against its first page (target ≤ 1.5×):
``bench.paging`` on a stack and database of its own.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from accounts.tokens import ACCESS, TokenIssuer
from bench import image_load, paging
from bench.api_stack import throwaway_run
from bench.cli import stop_on_sigterm
from bench.feed_seed import account, connect, insert_users, nickname, session_id
from config import Settings
from feeds.entries import MAX_IMAGE_BYTES
from storage.db import migrate

PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
RSS_TARGET_MIB = 300
THROUGHPUT_TARGET = 0.7


def say(text: str) -> None:
    """Progress on stdout at once."""
    print(text, flush=True)


def load() -> str:
    """The load averages of the machine."""
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def static_endpoint(image: Path) -> Callable[[int], list[str]]:
    """The argv of this module's static-file endpoint serving ``image`` on a given port."""
    return lambda port: [
        sys.executable,
        "-m",
        "bench.images",
        "--serve-static",
        str(image),
        "--port",
        str(port),
    ]


def auth(issuer: TokenIssuer, user: int) -> dict[str, str]:
    """``Authorization`` and ``email`` of seeded user ``user``."""
    token = issuer.issue(ACCESS, account(user), user, session_id(user), 0)
    return {"Authorization": f"Bearer {token}", "email": account(user)}


def save_fields(user: int, day: int) -> list[tuple[str, str]]:
    """saveFeed's text fields for ``user``'s entry of 2025-01-``day``."""
    return [
        ("text", "bench"),
        ("categoryList", "coffee"),
        ("isPublic", "true"),
        ("date", str(20250100000000 * 100 + day * 10**8 + 12_000_000)),
        ("weather", "sunny"),
        ("happiness", "4"),
        ("nickname", nickname(user)),
    ]


def store_image(port: int, issuer: TokenIssuer, image: bytes) -> str:
    """Save user 1's entry with ``image``; the image's URL."""
    base = f"http://127.0.0.1:{port}/feed-service"
    fields = save_fields(1, 1)
    with httpx.Client(timeout=120) as http:
        files = [("imageList[0]", ("image.png", image, "image/png"))]
        saved = http.post(f"{base}/saveFeed", data=dict(fields), files=files, headers=auth(issuer, 1))
        saved.raise_for_status()
        day = {"nickname": (None, nickname(1)), "date": (None, fields[3][1])}
        [image_id] = http.post(f"{base}/findDayFeed", files=day, headers=auth(issuer, 1)).json()[
            "imageIdList"
        ]
        url = f"/feed-service/image/{image_id}"
        if http.get(f"http://127.0.0.1:{port}{url}").content != image:
            raise SystemExit("the API returned other bytes than were stored")
    return url


def deep_page(args: argparse.Namespace) -> None:
    """The deep-page latency of findOtherFeed against its first page (target ≤ 1.5×): ``bench.paging``
    on a stack and database of its own (``--deep-page N`` entries deep; ``--skip-deep-page`` leaves it
    out)."""
    if args.skip_deep_page:
        say("deep page: skipped (--skip-deep-page)")
        return
    say(f"deep page: findOtherFeed page {args.deep_page} against page 0 (bench.paging)")
    public = max(100_000, (args.deep_page + 2) * paging.PAGE_SIZE)
    paging.run(public=public, page=args.deep_page, samples=args.deep_samples)


def arguments() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent downloads (default 32)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per download run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each run")
    parser.add_argument("--uploaders", type=int, default=8, help="concurrent uploading clients (default 8)")
    parser.add_argument("--entries", type=int, default=5, help="entries each uploader saves (default 5)")
    parser.add_argument("--image-mib", type=float, default=MAX_IMAGE_BYTES / 2**20, help="image size (25)")
    parser.add_argument("--skip-deep-page", action="store_true", help="leave out the deep-page latency")
    parser.add_argument("--deep-page", type=int, default=2000, help="the deep page of findOtherFeed")
    parser.add_argument("--deep-samples", type=int, default=300, help="requests of each page measured")
    parser.add_argument("--serve-static", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    """Start, measure idle, downloads and uploads, print every figure with its baseline and ratio."""
    args = arguments()
    if args.serve_static:
        image_load.serve_static(args.serve_static, args.port)
        return
    stop_on_sigterm()
    image = PNG_HEAD + random.randbytes(int(args.image_mib * 2**20) - len(PNG_HEAD))
    with throwaway_run("bench-images-") as run:
        db_url, work = run.db_url, run.work
        (work / "image.png").write_bytes(image)
        say(f"{load()} at start; migrating a throwaway database; logs in {work}")
        migrate(db_url)
        conn = connect(db_url)
        with conn.cursor() as cur:
            insert_users(cur, range(1, args.uploaders + 2))
        conn.commit()
        conn.close()
        stack = run.start_api(env=paging.QUIET_API, beside={"static": static_endpoint(work / "image.png")})
        ports, api_pid = stack.ports, stack.pid()
        issuer = TokenIssuer(Settings(env="test"))
        httpx.post(  # one small authenticated request, so idle means "has served", not "just imported"
            f"http://127.0.0.1:{ports['api']}/feed-service/findDayFeed",
            files={"nickname": (None, nickname(1)), "date": (None, "2025010100000000")},
            headers=auth(issuer, 1),
            timeout=30,
        ).raise_for_status()
        with image_load.RssSampler(api_pid) as idle:
            time.sleep(5)
        say(f"idle: API VmRSS median {idle.median_mib:.1f} MiB, peak {idle.peak_mib:.1f} MiB")

        url = store_image(ports["api"], issuer, image)
        size = len(image)
        say(f"stored one {size / 2**20:.1f} MiB image; {args.clients} clients download it, "
            f"{args.warmup:g} s warm-up + {args.seconds:g} s, from the API and then from the static endpoint")  # fmt: skip
        with image_load.RssSampler(api_pid) as during_downloads:
            api = image_load.download(ports["api"], url, size, args.clients, args.warmup, args.seconds)
        bare = image_load.download(ports["static"], "/file", size, args.clients, args.warmup, args.seconds)
        for name, result in (("API", api), ("static", bare)):
            say(f"  {name:6s} {result.mib_per_second:7.1f} MiB/s, {result.responses} whole images in the window, "
                f"{len(result.errors)} errors {result.errors[:3]}")  # fmt: skip

        saves = image_load.MultipartSaves(image, images_per_entry=2)
        per_client = [
            [(auth(issuer, user), saves.fields(save_fields(user, 2 + e))) for e in range(args.entries)]
            for user in range(2, args.uploaders + 2)
        ]
        say(
            f"{args.uploaders} clients each save {args.entries} entries with two {size / 2**20:.1f} MiB images"
        )
        with image_load.RssSampler(api_pid) as during_uploads:
            up = image_load.upload(ports["api"], saves, per_client)
        say(f"  {sum(up.answered.values())} answers {up.answered} in {up.seconds:.1f} s "
            f"({up.body_bytes / up.seconds / 2**20:.1f} MiB/s of bodies)")  # fmt: skip
        for sample in up.samples:
            say(f"  ERROR {sample}")
        hwm = image_load.status_kib(api_pid, "VmHWM") / 1024

        deep_page(args)

        say("")
        base = idle.median_mib
        phases = (
            (f"{args.clients} downloads", during_downloads),
            (f"{args.uploaders} uploaders", during_uploads),
        )
        for label, sampler in phases:
            over = sampler.peak_mib - base
            verdict = "met" if over < RSS_TARGET_MIB else "NOT met"
            say(f"peak RSS, {label:12s}: {sampler.peak_mib:7.1f} MiB = idle {base:.1f} + {over:6.1f} MiB "
                f"(target < {RSS_TARGET_MIB} above idle: {verdict})")  # fmt: skip
        say(f"API VmHWM at the end of the run: {hwm:.1f} MiB")
        ratio = api.mib_per_second / bare.mib_per_second if bare.mib_per_second else float("nan")
        verdict = "met" if ratio >= THROUGHPUT_TARGET else "NOT met"
        say(f"download throughput: API {api.mib_per_second:.1f} MiB/s, static endpoint {bare.mib_per_second:.1f} "
            f"MiB/s, API / static {ratio:.2f} (target >= {THROUGHPUT_TARGET}: {verdict})")  # fmt: skip
        if api.errors or bare.errors or set(up.answered) != {200}:
            say("SOME REQUESTS FAILED: these figures are not valid (see the lines above)")
        say(f"{load()} at the end")


if __name__ == "__main__":
    main()
