"""`python -m bptrain` is the same as the `bptrain` command."""

from .app.commands import main

if __name__ == "__main__":
    main()
