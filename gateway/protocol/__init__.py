"""What the gateway and its clients share: units, vocabulary, JSON codecs, market info, L2 books.

Nothing here imports the server side; the SDK (``gateway.sdk``) imports only this package,
``engine.wire`` and ``engine.types`` (an import-linter contract keeps it so).
"""
