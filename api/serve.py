"""``python -m api.serve``: the API process as the container image and ``make run`` start it.

The one definition of the uvicorn flags: h11 (it writes header names as given; the iOS client looks up
``Authorization`` case-sensitively, and httptools lower-cases names), the sans-I/O ``websockets``
implementation without per-message deflate, with the DM frame size limit and a bound on unread pongs
(``api.dm_limits.DmWebSocketProtocol``), no access log
(``api.metrics`` writes one JSON line per request, without the query string), proxy headers from the
configured peers, and a bounded graceful shutdown on SIGTERM.

One uvicorn process (no ``--workers``): the process's metrics registry is one, served on
``SOSOHAPPY_API_METRICS_PORT`` beside the API's port; more throughput is more pods (or more processes
each with a metrics port of its own), never several workers behind one registry.
"""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from api.dm_limits import DmWebSocketProtocol
from api.main import configure_api_logging, create_app
from api.metrics import serve_metrics
from config import Settings
from config.processes import Process, load_settings

log = logging.getLogger(__name__)

#: What this entry point checks its settings for (``config.processes``).
PROCESS = Process.API


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments of the API (besides the app itself)."""
    return {
        "host": settings.api_host,
        "port": settings.api_port,
        "http": "h11",
        "ws": DmWebSocketProtocol,  # "websockets-sansio", bounding the pongs a peer leaves unread
        "ws_per_message_deflate": False,
        # The DM frame limit (api.dm_limits): a larger frame is refused with 1009 before it is buffered.
        "ws_max_size": settings.dm_max_frame_bytes,
        "access_log": False,
        "log_config": None,  # configure_logging already owns every logger, uvicorn's included
        "proxy_headers": settings.api_proxy_headers,
        "forwarded_allow_ips": settings.api_forwarded_allow_ips,
        "timeout_graceful_shutdown": settings.api_graceful_shutdown_seconds,
        "lifespan": "on",
    }


def main() -> None:
    """Serve the API (and its metrics on their own port) until SIGINT/SIGTERM."""
    settings = load_settings(PROCESS)
    configure_api_logging(settings)
    metrics = None
    if settings.api_metrics_port:
        metrics = serve_metrics(settings.api_host, settings.api_metrics_port)
        log.info("API metrics on %s:%d/metrics", settings.api_host, metrics.port)
    try:
        uvicorn.Server(uvicorn.Config(create_app(settings), **uvicorn_options(settings))).run()
    finally:
        if metrics is not None:
            metrics.stop()


if __name__ == "__main__":
    main()
