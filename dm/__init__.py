"""Direct messages: frames, the message store, the room list, presence and the per-replica socket hub."""
