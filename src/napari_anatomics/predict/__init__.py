"""Stage 4, auto-label: tiled, blended prediction of whole stacks to probability maps on disk."""
