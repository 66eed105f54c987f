"""The risk stage: accounts, pre-trade checks and margin recomputation around engine.math."""
