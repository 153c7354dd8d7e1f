"""``python -m zjournal.cli``: the same as the ``zjournal`` command."""

from zjournal.cli import main

main()
