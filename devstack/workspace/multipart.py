"""Parse ``multipart/form-data`` request bodies.

databricks-sdk's ``workspace.upload`` posts the import as a form (fields ``path``, ``format``,
``language``, ``overwrite`` and the file part ``content``) rather than as JSON. The server
turns such a body into the same dict a JSON body gives: text fields as ``str``, file parts as
``bytes`` (the Workspace import handler accepts raw bytes for ``content``).
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from typing import Any


def is_form_data(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


def parse_form_data(raw: bytes, content_type: str) -> dict[str, Any]:
    """Fields of a multipart/form-data body; raises ValueError when it is not one."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not message.is_multipart():
        raise ValueError("the body is not multipart/form-data (missing boundary?)")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        fields[name] = payload if part.get_filename() is not None else payload.decode("utf-8")
    return fields
