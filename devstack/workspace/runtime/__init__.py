"""The notebook runtime of an emulated cluster: a driver process that really runs notebooks.

The control plane uses :class:`DriverProcess` (start, execute, cancel, kill); the driver side
lives in ``driver.py`` and runs each task execution in its own thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.workspace.runtime.client import DriverProcess, DriverStartError

__all__ = ["DriverProcess", "DriverStartError"]


def __getattr__(name: str):
    # Lazy: the driver process imports this package too, and needs none of the client.
    if name in __all__:
        from devstack.workspace.runtime import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
