"""The canvas: CanvasView draws a CanvasDocument and turns input into edits; panels around it."""
