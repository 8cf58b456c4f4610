"""The Gallery tab: every picture in the output folder (desktop/core/gallery does the work)."""
