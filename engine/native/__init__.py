"""Compiled parts of the engine: ``_hxcore.Core``, the matching state machine in C.

Built by ``make setup`` (``pip install -e .`` compiles ``_hxcore.c`` through ``setup.py``). The Python
twin in ``engine/shard/matching_engine.py`` is its specification; ``engine.shard.native_engine``
wraps it behind the same API. ``_hxrisk`` (``Core``, ``Ledger``) is the risk engine's hot path, the same
way: ``engine/risk/risk_engine.py`` is its specification, ``engine.risk.native_risk`` wraps it.
"""
