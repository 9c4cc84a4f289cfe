"""A local Microsoft Graph + Entra ID simulator: HTTPS with its own CA, Graph's checks, throttling and faults.

It imports nothing else from the project, so it can catch the production code's bugs rather than share them.
"""

from worker.simulator.config import SimulatorConfig
from worker.simulator.server import Simulator, SimulatorError, serve

__all__ = ["Simulator", "SimulatorConfig", "SimulatorError", "serve"]
