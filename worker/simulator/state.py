"""Everything one running simulator remembers, shared by its Entra, Graph and control routes."""

from __future__ import annotations

from collections.abc import Mapping

from worker.simulator.config import SimulatorConfig
from worker.simulator.faults import FaultInjector
from worker.simulator.ratelimit import RateLimiter
from worker.simulator.recorder import Recorder
from worker.simulator.tokens import TokenAuthority


class SimulatorState:
    """The config in force, the token key, the throttling windows, the fault dice and the record.

    Only the server's event loop touches it, so no lock is needed.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        """Fresh state for `config`, with a new token signing key."""
        self.config = config
        self.tokens = TokenAuthority()
        self.limiter = RateLimiter(config.effective_rate_limits)
        self.faults = FaultInjector(config.seed)
        self.recorder = Recorder()

    def reconfigure(self, changes: Mapping[str, object]) -> SimulatorConfig:
        """Applies runtime changes (ValueError if invalid); new limits or a new seed start afresh."""
        new = self.config.updated(changes)
        if new.effective_rate_limits != self.config.effective_rate_limits:
            self.limiter = RateLimiter(new.effective_rate_limits)
        if "seed" in changes:
            self.faults.reseed(new.seed)
        self.config = new
        return new

    def reset(self) -> None:
        """Clears records, counters and throttling, and restarts the fault sequence from the seed."""
        self.recorder.reset()
        self.limiter.reset()
        self.faults.reseed(self.config.seed)
