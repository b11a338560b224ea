"""Stage 5, correct and quantify: proofreading edits, per-object statistics, metrics, meshes."""
