"""Stage 1, load: read any stack lazily, combine slice folders, write volumes, output policy."""
