"""Study names and storage URLs: a name is also a file name, and a URL's password never reaches
output (:func:`mask_url`)."""
from __future__ import annotations

from pathlib import Path

from ...errors import UserError

MAX_NAME = 200  # characters: a name is also a file name (with suffixes), and a column
NAME_RULE = f"use at most {MAX_NAME} letters, digits, '-', '_' or '.' (not first)"


def is_valid_name(name: str) -> bool:
    """Study names are file names: no path separators, no leading dot (no traversal)."""
    return 0 < len(name) <= MAX_NAME and name[0] != "." and \
        all(c.isalnum() or c in "-_." for c in name)


def shown_name(name: str) -> str:
    """``name`` for an error message: cut when long."""
    return repr(name) if len(name) <= 60 else f"{name[:40]!r}... ({len(name)} characters)"


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise UserError(f"study name {shown_name(name)}: {NAME_RULE}")
    return name


def default_storage_url(name: str) -> str:
    """Where study ``name`` lives unless a storage URL is given."""
    return f"sqlite:///studies/{check_name(name)}.db"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for output and logs."""
    if "://" not in url or url.startswith("journal:"):
        return url
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: hide everything between '//' and '@'
        head, _, rest = url.partition("://")
        return f"{head}://***@{rest.rpartition('@')[2]}" if "@" in rest else url


def sqlite_path(url: str) -> Path:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path in ("", ":memory:"):
        raise UserError(f"storage {url!r}: an in-memory database loses every result and cannot "
                        f"be shared by workers; use sqlite:///FILE.db")
    return Path(path)


def without_secrets(text: str, url: str) -> str:
    try:
        from sqlalchemy.engine import make_url
        password = make_url(url).password
    except Exception:
        return text
    return text.replace(str(password), "***") if password else text
