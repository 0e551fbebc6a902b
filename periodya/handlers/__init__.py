"""Command handlers: lock, load the stream, fold, decide, append with the expected version."""
