"""The desktop app (PySide6): a thin layer over the headless core; the only package importing Qt."""
