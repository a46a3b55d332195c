"""alphapulse signals stage."""
