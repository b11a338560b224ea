"""``python -m napari_anatomics.cli``: the ``anatomics`` command without its entry point."""

import sys

from . import main

sys.exit(main())
