"""Configuration shared by every process."""

from config.settings import Settings

__all__ = ["Settings"]
