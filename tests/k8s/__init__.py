"""Checks of what ships to a cluster: the image, the pipeline, the manifests and the monitoring."""

from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parents[2]
