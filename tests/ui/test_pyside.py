"""The PySide6 in use keeps Python's books straight.

PySide6 6.12.0 dropped a reference to None each time an empty QVariant came
back to Python (an item model's data() for a role it has nothing for, on
every repaint of the gallery and the layers panel), and the app crashed
with "deallocating None" after a few minutes of scrolling. pyproject.toml
excludes that release; this test catches the next one like it.
"""

import sys

from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt


class Empty(QAbstractListModel):
    def rowCount(self, parent=QModelIndex()):
        return 1

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        return None


def test_empty_qvariants_do_not_drop_references_to_none(qapp):
    model = Empty()
    index = model.index(0)
    before = sys.getrefcount(None)
    for _ in range(1000):
        assert index.data(Qt.ItemDataRole.DecorationRole) is None
        assert QModelIndex().data(Qt.ItemDataRole.DisplayRole) is None
    assert sys.getrefcount(None) - before > -100
