"""``python -m diskkit`` runs the command line."""

from diskkit.cli.main import main

if __name__ == "__main__":
    main()
