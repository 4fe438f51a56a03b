"""Fixtures shared by the test modules."""

import pytest

from textgym.agents.state import Checkpointer, TrainingInterrupted


@pytest.fixture
def stop_at(monkeypatch):
    """``stop_at(iteration, train, *args, **kwargs)``: call ``train`` as if SIGTERM arrived during
    ``iteration``; returns the :class:`TrainingInterrupted` it raises."""

    def stop(iteration, train, *args, **kwargs):
        real = Checkpointer.end_of_iteration

        def end_of_iteration(self, run):
            if run.iteration == iteration:
                self.stop = "SIGTERM"
            real(self, run)

        monkeypatch.setattr(Checkpointer, "end_of_iteration", end_of_iteration)
        try:
            with pytest.raises(TrainingInterrupted) as caught:
                train(*args, **kwargs)
        finally:
            monkeypatch.setattr(Checkpointer, "end_of_iteration", real)
        return caught.value

    return stop
