"""Workspace files next to a notebook, made importable as on Databricks (DBR 13+).

A notebook at ``/Shared/mlops/train_model`` may ``from lifecycle.training import ...`` where
``/Shared/mlops/lifecycle/training.py`` is a workspace *file*. The driver mirrors the FILE
objects of the notebook's folder into ``<cluster_dir>/workspace/<folder>`` over the Workspace API
and puts that directory on ``sys.path``. Unchanged files (same modified_at) are not fetched again.
"""

from __future__ import annotations

import base64
import sys
import threading
from pathlib import Path

from devstack.workspace.runtime.wsclient import WorkspaceApiError, WorkspaceClient

MAX_FILES = 2000  # a safety net against mirroring a huge folder such as /Users
MAX_DEPTH = 8


class WorkspaceFiles:
    def __init__(self, client: WorkspaceClient, root: Path):
        self._client = client
        self._root = Path(root)
        self._seen: dict[Path, int] = {}  # local file -> modified_at of the copy we hold
        self._lock = threading.Lock()

    def mirror(self, folder: str) -> Path | None:
        """Mirror the files under workspace ``folder``; return the local dir (None if it has no files)."""
        local_dir = self._root / folder.strip("/")
        with self._lock:
            try:
                files = self._list_files(folder)
            except WorkspaceApiError as exc:
                # No list API, or the folder vanished: the notebook still runs, without imports.
                print(
                    f"[driver] cannot list workspace folder {folder}: {exc}", file=sys.__stderr__, flush=True
                )
                return None
            fetched = False
            for path, modified_at in files:
                target = self._root / path.strip("/")
                if self._seen.get(target) == modified_at and target.exists():
                    continue
                fetched = True
                answer = self._client.get("/api/2.0/workspace/export", path=path, format="SOURCE")
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".tmp")
                tmp.write_bytes(base64.b64decode(answer.get("content") or ""))
                tmp.replace(target)
                self._seen[target] = modified_at
            if fetched:
                import importlib

                importlib.invalidate_caches()  # new files must be importable at once
        return local_dir if files else None

    def _list_files(self, folder: str) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        pending = [(folder, 0)]
        while pending:
            path, depth = pending.pop()
            answer = self._client.get("/api/2.0/workspace/list", path=path)
            for obj in answer.get("objects", []):
                kind = obj.get("object_type")
                if kind in ("DIRECTORY", "REPO") and depth < MAX_DEPTH:
                    pending.append((obj["path"], depth + 1))
                elif kind == "FILE":
                    found.append((obj["path"], int(obj.get("modified_at") or 0)))
                    if len(found) >= MAX_FILES:
                        return found
        return found
