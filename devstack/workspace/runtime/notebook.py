"""Reading notebooks: Databricks source format and .ipynb, from the workspace or a git checkout."""

from __future__ import annotations

import base64
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

from devstack.workspace.runtime.wsclient import WorkspaceApiError, WorkspaceClient

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
MAGIC = "# MAGIC"

# Cell languages the runtime knows; anything else after '%' fails naming the cell.
SKIPPED = {"md", "md-sandbox", "pip", "sh", "conda"}


class NotebookNotFound(FileNotFoundError):
    """The notebook path does not exist in the workspace or the checkout."""


@dataclass
class Cell:
    index: int  # 1-based, as the Databricks UI counts
    kind: str  # "python" or a magic name ("md", "run", "sql", "pip", ...)
    text: str  # code (python) or the magic's argument text (everything after %kind)


@dataclass
class Notebook:
    ref: NotebookRef
    cells: list[Cell]


@dataclass(frozen=True)
class NotebookRef:
    """Where a notebook lives: ``source`` is WORKSPACE (path is a workspace path) or GIT
    (path is relative to ``git_root``)."""

    source: str
    path: str
    git_root: str | None = None

    def __str__(self) -> str:
        return self.path

    def resolve(self, target: str) -> NotebookRef:
        """The notebook that ``%run target`` / ``notebook.run(target)`` means from this one."""
        target = target.strip().strip("\"'")
        if target.startswith("/"):
            # An absolute path always names a workspace notebook, as on Databricks.
            return NotebookRef("WORKSPACE", posixpath.normpath(target))
        base = posixpath.dirname(self.path)
        joined = posixpath.normpath(posixpath.join(base, target))
        if self.source == "GIT" and joined.startswith("../"):
            raise NotebookNotFound(f"Notebook {target!r} (from {self.path}) points outside the git checkout")
        return NotebookRef(self.source, joined, self.git_root)


def parse(text: str) -> list[Cell]:
    """Split notebook text (source format, plain .py, or .ipynb JSON) into cells."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "cells" in doc:
            return _parse_ipynb(doc)
    lines = text.splitlines()
    if lines and lines[0].strip() == HEADER:
        chunks: list[list[str]] = [[]]
        for line in lines[1:]:
            if line.strip() == SEPARATOR:
                chunks.append([])
            else:
                chunks[-1].append(line)
    else:
        chunks = [lines]  # a plain .py file is one cell
    cells = []
    for number, chunk in enumerate(chunks, 1):
        cell = _source_cell(number, chunk)
        if cell is not None:
            cells.append(cell)
    return cells


def _source_cell(index: int, lines: list[str]) -> Cell | None:
    lines = [line for line in lines if not line.startswith("# DBTITLE")]
    body = [line for line in lines if line.strip()]
    if not body:
        return None
    if all(line.startswith(MAGIC) for line in body):
        unmagic = [_strip_magic(line) for line in lines if line.startswith(MAGIC)]
        return _magic_cell(index, "\n".join(unmagic))
    return Cell(index, "python", "\n".join(lines).strip("\n") + "\n")


def _strip_magic(line: str) -> str:
    rest = line[len(MAGIC) :]
    return rest[1:] if rest.startswith(" ") else rest


def _magic_cell(index: int, text: str) -> Cell:
    text = text.strip("\n")
    first, _, rest = text.partition("\n")
    head, _, arg = first.strip().partition(" ")
    kind = head.lstrip("%").lower()
    if kind == "python":
        return Cell(index, "python", rest + "\n")
    body = (arg + "\n" + rest).strip() if rest else arg.strip()
    return Cell(index, kind, body)


def _parse_ipynb(doc: dict) -> list[Cell]:
    cells = []
    for number, raw in enumerate(doc.get("cells", []), 1):
        if raw.get("cell_type") != "code":
            continue
        source = raw.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        if not text.strip():
            continue
        if text.lstrip().startswith("%"):
            cells.append(_magic_cell(number, text.lstrip()))
        else:
            cells.append(Cell(number, "python", text.rstrip("\n") + "\n"))
    return cells


def load(ref: NotebookRef, client: WorkspaceClient) -> Notebook:
    """Read and parse the notebook ``ref`` names; fail naming the path when it does not exist."""
    if ref.source == "GIT":
        return Notebook(ref, parse(_read_git(ref)))
    try:
        answer = client.get("/api/2.0/workspace/export", path=ref.path, format="SOURCE")
    except WorkspaceApiError as exc:
        if exc.status == 404 or exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotebookNotFound(
                f"Notebook not found: {ref.path}. Import it into the workspace (workspace/import) "
                f"or fix notebook_path."
            ) from None
        raise
    file_type = (answer.get("file_type") or "py").lower()
    content = base64.b64decode(answer.get("content") or "").decode("utf-8")
    if file_type in ("scala", "sql", "r"):
        raise ValueError(
            f"Notebook {ref.path} is a {file_type.upper()} notebook; the devstack runs Python notebooks only"
        )
    return Notebook(ref, parse(content))


def _read_git(ref: NotebookRef) -> str:
    if not ref.git_root:
        raise NotebookNotFound(
            f"Notebook {ref.path}: source is GIT but the task has no git checkout (git_root)"
        )
    root = Path(ref.git_root)
    candidates = [root / ref.path]
    if not ref.path.endswith((".py", ".ipynb")):
        candidates += [root / (ref.path + ".py"), root / (ref.path + ".ipynb")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise NotebookNotFound(
        f"Notebook not found: {ref.path} in git checkout {root} (tried {', '.join(c.name for c in candidates)})"
    )
