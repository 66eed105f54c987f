"""Who accounts are: Ethereum address <-> internal account id, agent keys (shared by gateways and
settlement through one append-only file in the run's state directory)."""
