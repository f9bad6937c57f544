"""CrossEval's attached files: which prompts a text-only model can attempt, and the text it is shown."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
FILES_ENV = "CAPEVAL_CROSSEVAL_FILES"


def resolve_attachment(value: str, data_root: Path | None) -> Path | None:
    """The local copy of an attached file: a path (absolute, or relative to the data folder), or
    for a URL its file name under $CAPEVAL_CROSSEVAL_FILES or `<data>/attachments/`."""
    value = value.strip()
    if not value:
        return None
    parsed = urlparse(value)
    is_url = parsed.scheme in ("http", "https")
    name = Path(unquote(parsed.path)).name if is_url else Path(value).name
    candidates: list[Path] = []
    if not is_url:
        p = Path(value).expanduser()
        candidates.append(p if p.is_absolute() or data_root is None else data_root / p)
    if os.environ.get(FILES_ENV):
        candidates.append(Path(os.environ[FILES_ENV]) / name)
    if data_root is not None:
        candidates.append(data_root / "attachments" / name)
    for c in candidates:
        if name and c.is_file():
            return c
    return None


def is_image(value: str) -> bool:
    return urlparse(value.strip()).path.lower().endswith(IMAGE_EXTENSIONS)


def read_text_attachment(path: Path) -> str | None:
    """The file's text, or None when it is not UTF-8 text (a PDF, a spreadsheet...)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (UnicodeDecodeError, OSError):
        return None


def support(capability: str, attached_file: str, data_root: Path | None) -> tuple[str | None, str | None]:
    """(reason it is unsupported or None, the attached text for the prompt or None)."""
    cap = capability.lower()
    if "image recognition" in cap or (attached_file and is_image(attached_file)):
        return "needs image input; capeval's backends are text-only", None
    if "tool use" in cap:
        return "needs tools (web browsing or a code interpreter) that the model does not have", None
    if not attached_file.strip():
        return None, None
    local = resolve_attachment(attached_file, data_root)
    if local is None:
        name = Path(urlparse(attached_file).path).name
        why = f"attached file {attached_file} has no local copy (save it as <data>/attachments/{name} or under ${FILES_ENV})"
        return why, None
    text = read_text_attachment(local)
    if text is None:
        return f"attached file {local.name} is not text", None
    return None, text


def user_prompt(prompt: str, attached_text: str | None) -> str:
    """The model-under-test's turn: the attached text (long context) first, then the prompt."""
    if attached_text:
        return f"Attached:\n{attached_text}\n\nUser Prompt:\n{prompt}"
    return prompt
