"""Model names on the command line and in recipes: a local path, or a Hugging Face Hub id.

The rule: an existing local path is a path; otherwise ``org/name`` with an optional ``@revision``
(branch, tag or commit) is a Hub repository, fetched into huggingface_hub's cache (or read from
it: ``HF_HUB_OFFLINE=1``, ``HF_HUB_CACHE``); anything else is an error naming both readings.
"""

from __future__ import annotations

import re
from pathlib import Path

from armdistill.errors import UserError

HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[^@\s]+))?")


class ModelNotFoundError(UserError, FileNotFoundError):
    """Neither an existing local path nor a Hub id that resolves."""


def resolve_pretrained(spec: str | Path, what: str, cached_only: bool = False) -> Path:
    """The local directory or file ``spec`` names; ``what`` ("student", "teacher") names it in errors.

    ``cached_only``: a Hub id is looked up in the cache and never downloaded."""
    path = Path(spec)
    if path.exists():
        return path
    text = str(spec)
    match = HUB_ID.fullmatch(text)
    if match is None:
        raise ModelNotFoundError(
            f"{what} {text!r}: no such local file or directory, and not a Hub id of the form org/name[@revision]"
        )
    # only Hub ids need huggingface_hub; students load without importing it
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(match["repo"], revision=match["revision"], local_files_only=cached_only))
    except (HFValidationError, HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        reason = " ".join(str(err).split())
        raise ModelNotFoundError(f"{what} {text!r}: no such local file or directory, and as a Hub id: {reason}") from None
