"""PySide6 widgets. They know desktop.core and reach the engine only through worker.py."""
