"""desktop/core/runs.py: a Run's parts count on one bar and share its cancel; a stored Run comes back by kind."""

from __future__ import annotations

import pytest

from desktop.core.errors import SfumatoError
from desktop.core.progress import TaskState
from desktop.core.runs import decode_run, part, register


def test_a_part_counts_its_steps_after_the_earlier_parts_and_shares_the_run_s_cancel():
    seen, said = [], []
    run_state = TaskState(on_step=lambda i, n, preview: seen.append((i, n)), on_status=said.append)
    second = part(run_state, 4, 12)
    second.step(1, 4, None)
    second.step(4, 4, None)
    second.status("Loading model...")
    assert seen == [(5, 12), (8, 12)] and said == ["Loading model..."]
    assert not second.cancelled()
    run_state.cancel()
    assert second.cancelled()
    third = part(TaskState(), 8, 12)
    third.cancel()  # a cancel reaching the part (the backend's cancel()) stops the whole run
    assert third.cancelled()


def test_a_stored_run_comes_back_by_its_kind_and_an_unknown_kind_is_a_sentence():
    register("test-kind", lambda data: ("made", data["n"]))
    assert decode_run({"kind": "test-kind", "n": 3}) == ("made", 3)
    with pytest.raises(SfumatoError, match=r"^A queued item of an unknown kind \('grid-v9'\) was skipped; a newer "
                                           r"Sfumato wrote it\.$"):
        decode_run({"kind": "grid-v9"})
