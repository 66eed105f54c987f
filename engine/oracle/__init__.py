"""The oracle stage: feeds -> index (median, staleness, bands, rate limit) -> marks, funding, sessions,
resolutions and delistings, published to shards, risk and the public stream. See ``process``."""
