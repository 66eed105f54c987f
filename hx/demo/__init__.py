"""`hx up --demo`: simulated traders through the real gateway, and a live terminal dashboard."""
