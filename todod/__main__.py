"""``python -m todod``: the daemon, as the ``todod`` command runs it."""

from todod._main import run

run()
