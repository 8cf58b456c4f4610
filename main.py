"""Start Sfumato: `python main.py` (the window) or `python main.py generate ...` (headless)."""

import sys

from desktop.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
