"""One module per command-line command; each turns a validated config into work."""
