"""``python -m eden``: the same CLI as the ``eden`` command (used to start helper processes)."""

import sys

from eden.cli import main

sys.exit(main())
