"""Fixtures shared by the test modules."""

import pytest

from textgym.agents.state import Checkpointer, TrainingInterrupted


@pytest.fixture(autouse=True, scope="session")
def sb3_logs_in_a_temporary_folder(tmp_path_factory):
    """Stable-Baselines3 makes a log folder for every ``learn``: in the session's temporary folder,
    not in the system's."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3_logs")))
    yield
    patch.undo()


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
