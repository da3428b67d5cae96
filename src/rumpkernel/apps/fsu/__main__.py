"""``python -m rumpkernel.apps.fsu``: the fsu command."""

import sys

from rumpkernel.apps.fsu.main import main

sys.exit(main())
