"""alphapulse detectors stage."""
