"""The actor runtime and the engine's actors.

Public surface: ``CartService`` (the engine's entry point), ``LocalPlacement`` and
``RayPlacement`` (where hosts run), ``ManualClock`` / ``SystemClock``, ``EngineSettings``.
"""

from actors.clock import ManualClock, SystemClock
from actors.placement import LocalPlacement
from actors.service import ADMIN, CartService
from actors.settings import EngineSettings

__all__ = ["ADMIN", "CartService", "EngineSettings", "LocalPlacement", "ManualClock",
           "SystemClock"]
