"""``python -m textgym ...`` is the ``textgym`` command (what ``torchrun -m textgym`` runs)."""

import sys

from textgym.cli import command

if __name__ == "__main__":
    sys.exit(command())
