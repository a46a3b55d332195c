"""alphapulse sink stage."""
