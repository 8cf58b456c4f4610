"""Start Sfumato: `python main.py` (the window) or `python main.py generate ...` (headless)."""

import multiprocessing
import sys

if __name__ == "__main__":
    # First thing: in the frozen app (installer/sfumato.spec) a child process started with multiprocessing's
    # "spawn" (desktop/engine/child.py: OpenVINO's converter) runs this executable again; this runs the child's
    # work and exits instead of opening another window. Does nothing when not frozen.
    multiprocessing.freeze_support()
    from desktop.__main__ import main

    sys.exit(main())
