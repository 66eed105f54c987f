"""The gateway's compiled parts (built by setup.py)."""
