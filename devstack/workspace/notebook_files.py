"""Databricks notebook files: the source format and its conversion to and from Jupyter.

A notebook in source format is a plain file whose first line is the language's comment plus
``Databricks notebook source``; cells are split by ``COMMAND ----------`` comment lines and
non-code cells (``%md``, ``%sql``, ``%run``) are kept as ``MAGIC`` comment lines. Git folders
store notebooks this way (``train.py`` is the notebook ``train``), or as ``.ipynb`` files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

LANGUAGES = ("PYTHON", "SQL", "SCALA", "R")
EXTENSION = {"PYTHON": "py", "SQL": "sql", "SCALA": "scala", "R": "r"}
# File suffix (lower case) -> notebook language.
SUFFIX_LANGUAGE = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R"}
COMMENT = {"PYTHON": "#", "SQL": "--", "SCALA": "//", "R": "#"}
# What a Jupyter kernel calls each language.
_KERNEL_LANGUAGE = {"python": "PYTHON", "sql": "SQL", "scala": "SCALA", "r": "R"}


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


def find_notebook_file(root: Path, notebook_path: str) -> Path | None:
    """The file under ``root`` holding notebook ``notebook_path`` (given with or without extension).

    ``notebooks/train`` finds ``notebooks/train.py`` (or .sql/.scala/.r/.ipynb); an explicit
    ``notebooks/train.py`` or ``notebooks/train.ipynb`` is taken as is.
    """
    rel = notebook_path.strip().lstrip("/")
    if not rel or any(part in ("..", ".git") for part in Path(rel).parts):
        return None
    exact = root / rel
    if exact.is_file() and exact.suffix.lower() in (*SUFFIX_LANGUAGE, ".ipynb"):
        return exact
    for suffix in (".py", ".ipynb", ".sql", ".scala", ".r", ".R"):
        candidate = root / (rel + suffix)
        if candidate.is_file():
            return candidate
    return None
