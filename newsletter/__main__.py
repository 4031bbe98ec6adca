"""``python -m newsletter``, and the ``newsletter`` command (pyproject's entry point)."""

import gc

# Start-up allocates only what lives as long as the process (modules, classes, tables):
# the collector would walk it again and again for nothing, and once more at exit. It is
# switched back on, with all of that frozen out of its walks, once the command is loaded
# (newsletter.cli.start_collecting): a fifth off the start of every command.
gc.disable()

from newsletter.cli import main  # noqa: E402  (after the line above, on purpose)

if __name__ == "__main__":
    main()
