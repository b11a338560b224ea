"""Thin napari dock widgets over the headless core (one file per widget)."""
