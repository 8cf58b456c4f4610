"""The gallery: every picture in the output folder, indexed, searchable, exportable.

store.py (the service), index.py (SQLite), metadata.py (what pictures say
about how they were made), thumbnails.py, export.py.
"""
