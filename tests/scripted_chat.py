"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tests: answers come from a Python rule.

The judge and the model under test in judge tests are real HTTP endpoints spoken to by capeval's
`openai` backend; only what they answer is scripted, so parsing, retries, caching and aggregation
run exactly as with a remote API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

# rule(model name, chat messages as dicts) -> the assistant's text
Rule = Callable[[str, list[dict[str, str]]], str]


class ScriptedChatServer:
    """`with ScriptedChatServer(rule) as srv:` then `load_model("openai:judge", base_url=srv.base_url)`."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.requests: list[dict[str, Any]] = []
        # each request's Authorization header (None when absent), in the order of `requests`
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.authorizations.append(self.headers.get("Authorization"))
                if self.path.endswith("/chat/completions"):
                    messages = body.get("messages", [])
                else:
                    messages = [{"role": "user", "content": body.get("prompt", "")}]
                text = server.rule(str(body.get("model", "")), messages)
                key = "message" if self.path.endswith("/chat/completions") else "text"
                choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
                choice[key] = {"role": "assistant", "content": text} if key == "message" else text
                payload = json.dumps(
                    {"id": "scripted", "object": "chat.completion" if key == "message" else "text_completion", "choices": [choice],
                     "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split())}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def calls_for(self, model: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r.get("model") == model]
