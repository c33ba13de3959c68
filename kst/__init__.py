"""The client's 16-digit KST timestamps, shared by feeds and direct messages (neither imports the other)."""
