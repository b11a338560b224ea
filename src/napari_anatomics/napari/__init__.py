"""The napari side: reader and writers, sample data, and thin panels over the headless core."""
