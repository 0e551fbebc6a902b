"""Pure domain: money, accounts, ledger groups, escrow and payout decisions. No I/O, no clock, no ids."""
