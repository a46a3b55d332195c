"""Shared foundation of alphapulse: settings, logging, metrics, Redis, the stream runtime,
message contracts and the error tree. Knows nothing of exchanges, patterns or tables."""
