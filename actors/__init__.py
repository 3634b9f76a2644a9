"""The actor runtime and the engine's actors.

Public surface: ``CartService`` (the engine's entry point) and ``CartOp`` (its batch
operations), ``LocalPlacement`` and ``RayPlacement`` (where hosts run), ``ManualClock`` /
``SystemClock``, ``EngineSettings``.
"""

from actors.clock import ManualClock, SystemClock
from actors.placement import LocalPlacement
from actors.service import ADMIN, CartOp, CartService
from actors.settings import EngineSettings

__all__ = ["ADMIN", "CartOp", "CartService", "EngineSettings", "LocalPlacement", "ManualClock",
           "SystemClock"]
