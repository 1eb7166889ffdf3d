"""Recording annotated video: crash-safe segments of live streams, and whole files."""
