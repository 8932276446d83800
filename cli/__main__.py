"""``python -m cli``: the same as the ``todo`` console script."""

from cli.app import main

main()
