"""Built-in simulators that produce clearly labelled synthetic learning data."""

from knowtrace.simulate.classroom import ClassroomSimulator
from knowtrace.simulate.tables import simulated_interactions

__all__ = ["ClassroomSimulator", "simulated_interactions"]
