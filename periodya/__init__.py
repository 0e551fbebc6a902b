"""Periodya: an event-sourced escrow and payout ledger."""

__version__ = "0.1.0"
