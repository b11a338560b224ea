"""Stage 4, post-process: probability maps to labels, block by block, with exact stitching."""
