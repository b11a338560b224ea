"""Stage 1, check: is an image / labels pair ready for training? A report a biologist reads."""
