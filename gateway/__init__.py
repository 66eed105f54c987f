"""The asyncio edge: WebSocket gateway (binary and JSON), auth, limits, fan-out, and the SDK."""
