"""The Temporal contract shared by the API, workflows, activities and workers.

Task queues, workflow-ID builders, search-attribute keys and the client factory live here so every
side agrees on them; nothing in this package performs I/O at import time.
"""
