"""Headless core of imgfinder: imports no Qt, usable from the CLI, the GUI and scripts."""
