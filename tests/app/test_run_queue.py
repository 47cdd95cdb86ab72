"""The run queue model without Qt: states, one progress figure, Cancel then Cancel again."""

from types import SimpleNamespace

from studio.app.run_queue import RunProgress, RunQueue, RunState


def test_a_second_cancel_while_stopping_empties_the_queue_and_cancel_is_off_when_idle():
    queue = RunQueue()
    assert not queue.can_cancel
    first, second = queue.add("graph", "a"), queue.add("graph", "b")
    assert queue.start_next() is first and first.status is RunState.RUNNING
    queue.cancel_current()
    assert first.status is RunState.CANCELLING and second.status is RunState.QUEUED
    queue.cancel_current()
    assert second not in queue.entries
    queue.finish(SimpleNamespace(status="cancelled", total_seconds=1.0, files=[], errors=[]))
    assert first.status is RunState.CANCELLED and not queue.can_cancel


def test_progress_weighs_nodes_by_their_steps():
    progress = RunProgress({"loader": 1, "sampler": 20, "decode": 1})
    progress.node_finished("loader")
    assert progress.fraction == 1 / 22  # loading the model is not most of the run
    progress.node_progress("sampler", 0.5)
    assert progress.fraction == 11 / 22
