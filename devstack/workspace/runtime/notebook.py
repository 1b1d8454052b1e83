"""The notebook codec: Databricks source format, Jupyter, cells, and where a notebook lives.

One codec for the whole emulator. The workspace files service uses it to import, export and list
notebooks (also those in Git folders); the driver uses it to read a task's notebook and split it
into cells.

A notebook in source format is a plain file whose first line is the language's comment plus
``Databricks notebook source``; cells are split by ``COMMAND ----------`` comment lines and
non-code cells (``%md``, ``%sql``, ``%run``) are kept as ``MAGIC`` comment lines. Git folders
and git checkouts store notebooks this way (``train.py`` is the notebook ``train``), or as
``.ipynb`` files. A notebook path of a git checkout is relative to its root and may not contain
``..`` (or ``.git``) segments, as workspace paths may not.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from devstack.workspace.runtime.wsclient import WorkspaceApiError, WorkspaceClient

LANGUAGES = ("PYTHON", "SQL", "SCALA", "R")
EXTENSION = {"PYTHON": "py", "SQL": "sql", "SCALA": "scala", "R": "r"}
# File suffix (lower case) -> notebook language.
SUFFIX_LANGUAGE = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R"}
COMMENT = {"PYTHON": "#", "SQL": "--", "SCALA": "//", "R": "#"}
# What a Jupyter kernel calls each language.
_KERNEL_LANGUAGE = {"python": "PYTHON", "sql": "SQL", "scala": "SCALA", "r": "R"}
# Suffixes tried, in order, for a notebook path given without one.
_SUFFIXES = (".py", ".ipynb", ".sql", ".scala", ".r", ".R")

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
MAGIC = "# MAGIC"

# Cell languages the runtime skips; anything else after '%' it does not know fails naming the cell.
SKIPPED = {"md", "md-sandbox", "pip", "sh", "conda"}


class NotebookNotFound(FileNotFoundError):
    """The notebook path does not exist in the workspace or the checkout."""


# --------------------------------------------------------------------------- formats


def header(language: str) -> str:
    return f"{COMMENT[language]} Databricks notebook source"


def has_header(text: str, language: str) -> bool:
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    return first == header(language)


def with_header(text: str, language: str) -> str:
    """The source text, starting with the notebook header (added when missing)."""
    return text if has_header(text, language) else f"{header(language)}\n{text}"


def source_language(name: str, data: bytes) -> str | None:
    """The language when ``name``/``data`` is a source-format notebook file, else None."""
    language = SUFFIX_LANGUAGE.get(Path(name).suffix.lower())
    if language is None:
        return None
    try:
        text = data[:256].decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    return language if has_header(text, language) else None


def notebook_language(path: Path) -> str | None:
    """The language of the notebook stored in file ``path`` (source or .ipynb), else None."""
    if path.suffix.lower() == ".ipynb":
        try:
            return ipynb_to_source(path.read_bytes())[1]
        except ValueError:
            return None
    with open(path, "rb") as fh:
        return source_language(path.name, fh.read(256))


def read_notebook_source(path: Path) -> tuple[str, str]:
    """(source text, language) of the notebook file ``path``."""
    data = path.read_bytes()
    if path.suffix.lower() == ".ipynb":
        return ipynb_to_source(data)
    language = SUFFIX_LANGUAGE[path.suffix.lower()]
    return with_header(data.decode("utf-8"), language), language


def ipynb_to_source(data: bytes) -> tuple[str, str]:
    """Convert a Jupyter notebook to (Databricks source text, language)."""
    try:
        nb = json.loads(data)
        cells = nb["cells"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a Jupyter notebook: {exc}") from None
    meta = nb.get("metadata") or {}
    kernel = (
        (meta.get("application/vnd.databricks.v1+notebook") or {}).get("language")
        or (meta.get("kernelspec") or {}).get("language")
        or (meta.get("language_info") or {}).get("name")
        or "python"
    )
    language = _KERNEL_LANGUAGE.get(str(kernel).lower(), "PYTHON")
    c = COMMENT[language]
    blocks = []
    for cell in cells:
        src = cell.get("source", "")
        text = "".join(src) if isinstance(src, list) else str(src)
        text = text.strip("\n")
        if cell.get("cell_type") == "markdown":
            text = "%md\n" + text
        elif cell.get("cell_type") != "code":
            continue
        if text.startswith("%"):
            text = "\n".join(f"{c} MAGIC {line}".rstrip() for line in text.split("\n"))
        blocks.append(text)
    body = f"\n\n{c} COMMAND ----------\n\n".join(blocks)
    return f"{header(language)}\n{body}\n", language


def source_to_ipynb(text: str, language: str) -> bytes:
    """Convert Databricks source text to a Jupyter (nbformat 4) notebook."""
    c = re.escape(COMMENT[language])
    text = text.lstrip("\ufeff")
    if has_header(text, language):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    magic = re.compile(rf"^{c} MAGIC ?")
    cells = []
    for raw in re.split(rf"^{c} COMMAND -+[ \t]*$", text, flags=re.M):
        block = raw.strip("\n")
        if not block.strip():
            continue
        lines = block.split("\n")
        cell_type = "code"
        if all(magic.match(line) or not line.strip() for line in lines):
            lines = [magic.sub("", line) for line in lines]
            if lines[0].strip().startswith("%md"):
                cell_type = "markdown"
                lines = lines[1:]
        source = [line + "\n" for line in lines]
        if source:
            source[-1] = source[-1].rstrip("\n")
        cell = {"cell_type": cell_type, "metadata": {}, "source": source}
        if cell_type == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    kernel = {v: k for k, v in _KERNEL_LANGUAGE.items()}[language]
    nb = {
        "cells": cells,
        "metadata": {
            "application/vnd.databricks.v1+notebook": {"language": kernel},
            "language_info": {"name": kernel},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(nb, indent=1).encode()


# --------------------------------------------------------------------------- notebooks in a checkout


def outside_checkout(notebook_path: str) -> bool:
    """Whether a checkout-relative path leaves the checkout or reaches into its ``.git``."""
    return any(part in ("..", ".git") for part in Path(notebook_path.strip().lstrip("/")).parts)


def find_notebook_file(root: Path, notebook_path: str) -> Path | None:
    """The file under ``root`` holding notebook ``notebook_path`` (given with or without extension).

    ``notebooks/train`` finds ``notebooks/train.py`` (or .sql/.scala/.r/.ipynb); an explicit
    ``notebooks/train.py`` or ``notebooks/train.ipynb`` is taken as is. A path with ``..`` or
    ``.git`` segments finds nothing.
    """
    rel = notebook_path.strip().lstrip("/")
    if not rel or outside_checkout(rel):
        return None
    exact = root / rel
    if exact.is_file() and exact.suffix.lower() in (*SUFFIX_LANGUAGE, ".ipynb"):
        return exact
    for suffix in _SUFFIXES:
        candidate = root / (rel + suffix)
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------- cells (the runtime)


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
        if self.source == "GIT" and outside_checkout(joined):
            raise NotebookNotFound(f"Notebook {target!r} (from {self.path}) points outside the git checkout")
        return NotebookRef(self.source, joined, self.git_root)


def parse(text: str) -> list[Cell]:
    """Split notebook text (source format, plain .py, or .ipynb JSON) into cells."""
    if text.lstrip().startswith("{"):
        try:
            text = ipynb_to_source(text.encode("utf-8"))[0]
        except ValueError:
            pass  # not a Jupyter notebook: Python code starting with a dict
    lines = text.lstrip("\ufeff").splitlines()
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
    _python_only(ref, file_type.upper() if file_type in ("scala", "sql", "r") else "PYTHON")
    return Notebook(ref, parse(content))


def _python_only(ref: NotebookRef, language: str) -> None:
    if language != "PYTHON":
        raise ValueError(
            f"Notebook {ref.path} is a {language} notebook; the devstack runs Python notebooks only"
        )


def _read_git(ref: NotebookRef) -> str:
    if not ref.git_root:
        raise NotebookNotFound(
            f"Notebook {ref.path}: source is GIT but the task has no git checkout (git_root)"
        )
    root = Path(ref.git_root)
    if outside_checkout(ref.path):
        raise NotebookNotFound(
            f"Notebook {ref.path}: a GIT notebook_path must stay inside the git checkout; "
            "'..' and '.git' segments are not allowed."
        )
    found = find_notebook_file(root, ref.path)
    if found is None:
        raise NotebookNotFound(
            f"Notebook not found: {ref.path} in git checkout {root} "
            f"(tried {ref.path} with {', '.join(_SUFFIXES)} or none)"
        )
    text, language = read_notebook_source(found)
    _python_only(ref, language)
    return text
