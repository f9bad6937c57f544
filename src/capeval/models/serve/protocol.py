"""The OpenAI wire protocol as `capeval serve-model` reads it: request errors and parameters."""

from typing import Any

from capeval.errors import CapevalError
from capeval.types import GenerationParams


class BadRequest(CapevalError):
    """A request the server cannot answer (sent back as HTTP 400)."""


class ModelNotFound(CapevalError):
    """A request naming a model this server does not serve (sent back as HTTP 404)."""


def generation_params(body: dict[str, Any]) -> GenerationParams:
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_completion_tokens")
    try:
        return GenerationParams(
            max_tokens=16 if max_tokens is None else int(max_tokens),  # 16: the OpenAI default
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            stop=tuple(str(s) for s in stop),
            seed=None if body.get("seed") is None else int(body["seed"]),
        )
    except (TypeError, ValueError) as e:
        raise BadRequest(f"invalid generation parameter: {e}") from None


def check_common(body: dict[str, Any]) -> None:
    if body.get("stream"):
        raise BadRequest("stream=true is not supported by capeval serve-model")
    if body.get("n", 1) not in (1, None):
        raise BadRequest("n > 1 is not supported; send the request n times")


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BadRequest("only text message parts are supported")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    if content is None:
        return ""
    raise BadRequest(f"unsupported message content: {content!r}")




def error_body(message: str, code: str, kind: str = "server_error") -> dict[str, Any]:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
