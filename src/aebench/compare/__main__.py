"""``python -m aebench.compare``: the ``aebench-compare`` command."""

from .command import main

main()
