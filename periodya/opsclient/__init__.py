"""`periodya ops`: the on-call engineer's terminal client of the public HTTP API (commands.py)."""
