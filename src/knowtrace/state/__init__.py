"""Online learner state: per-learner model state kept current by the stream worker, read by the API.

``StateStore`` (``open_state(url)``): ``SQLiteStateStore`` (embedded) or ``RedisStateStore``;
``OnlineStateUpdater`` applies log entries to the deployed online models' learner states.
"""

from knowtrace.state.store import LearnerState, StateError, StateStore, open_state
from knowtrace.state.updater import OnlineStateUpdater

__all__ = ["LearnerState", "OnlineStateUpdater", "StateError", "StateStore", "open_state"]
