"""``python -m bptrain`` is the ``bptrain`` command."""

from .app.cli import main

if __name__ == "__main__":
    main()
