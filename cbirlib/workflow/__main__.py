"""``python -m cbirlib.workflow``: see :mod:`cbirlib.workflow.commands`."""

import sys

from .commands import main

sys.exit(main())
