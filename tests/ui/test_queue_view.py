"""The queue view moves the selected jobs as a block."""

from __future__ import annotations

from desktop.ui.queue_view import QueueView
from tests.support.requests import make_request


def view_on(qtbot, order: list[int]) -> QueueView:
    view = QueueView()
    qtbot.addWidget(view)

    def move(job_id: int, by: int) -> None:  # what the worker does with a move
        index = order.index(job_id)
        to = max(0, min(len(order) - 1, index + by))
        if to != index:
            order.insert(to, order.pop(index))
        view.set_jobs([(job, make_request(prompt=str(job))) for job in order])

    view.move_requested.connect(move)
    view.set_jobs([(job, make_request(prompt=str(job))) for job in order])
    return view


def test_a_selected_block_at_the_top_or_bottom_keeps_its_order_and_moves_as_one_elsewhere(qtbot):
    order = [1, 2, 3, 4]
    view = view_on(qtbot, order)
    view.list.item(0).setSelected(True)
    view.list.item(1).setSelected(True)
    view.up_button.click()
    assert order == [1, 2, 3, 4]  # already first: nothing moves, nothing swaps
    view.down_button.click()
    assert order == [3, 1, 2, 4]

    order[:] = [1, 2, 3, 4]
    view.set_jobs([(job, make_request(prompt=str(job))) for job in order])
    view.list.item(2).setSelected(True)
    view.list.item(3).setSelected(True)
    view.down_button.click()
    assert order == [1, 2, 3, 4]
