"""The Models window, by feature.

    dialog.py      ModelsDialog: puts the parts together; scanning, adding a model file, choosing
    table.py       the table of models found (ModelTable, ModelTableModel)
    folders.py     FolderListEditor: the folders searched; the Settings window uses it too
    download.py    DownloadPanel: download from Hugging Face, with progress, Cancel and Retry
    other_apps.py  OtherAppsDialog: tick the model folders of other apps to search
    common.py      folder names, message styles and buttons the parts share
"""

from .dialog import ModelsDialog

__all__ = ["ModelsDialog"]
