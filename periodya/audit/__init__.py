"""Audit: replay and diff, balances as of any moment, history, export, daily digests, tamper checks.

Everything here reads the log itself (periodya.events), never trusting a projection for an answer:
the projections are what an audit checks, not what it relies on.
"""
