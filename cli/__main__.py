"""``python -m cli``: the same as the ``todo`` console script."""

import sys

from cli._main import main

sys.exit(main())
