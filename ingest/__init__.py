"""alphapulse ingest stage."""
