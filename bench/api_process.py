"""The API process of the benchmarks that start uvicorn with flags of their own
(``uvicorn bench.api_process:app --factory …``): ``api.main``'s factory plus the metrics port that
``python -m api.serve`` serves beside the API (``SOSOHAPPY_API_METRICS_PORT``), so a benchmark reads a
replica's counters and dependency gauges where Prometheus would."""

from __future__ import annotations

from fastapi import FastAPI

from api import main
from api.metrics import serve_metrics
from config import Settings


def app() -> FastAPI:
    """Factory for uvicorn: the API (settings from the environment) with its metrics port started."""
    settings = Settings()
    application = main.app()
    if settings.api_metrics_port:
        serve_metrics(settings.api_host, settings.api_metrics_port)  # a daemon thread: lives with the process
    return application
