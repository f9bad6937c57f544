"""`capeval serve-model`: any capeval Model behind an OpenAI-compatible HTTP API, with fault injection.

Endpoints: `GET /v1/models`, `POST /v1/completions` (plain-text prompts; `echo` and `logprobs`
for log-likelihood scoring) and `POST /v1/chat/completions` (messages, through the model's chat
template). Model calls are serialized by one lock and run in a worker thread, so the event loop
keeps answering (`/v1/models`, fault responses, other connections) while the model works; with
`max_batch` > 1 (`--max-batch`), generation requests that wait together share one model call.

How prompt log-probabilities are computed (`echo` + `logprobs`). For the hf backend (the bundled
models), one forward pass over the tokens `model.encode` gives the whole text, the same tokens
its `loglikelihood` scores: each token's logprob, and in `top_logprobs` the most likely token at
that position. So the sum over the tokens of a continuation equals the backend's own
log-likelihood of it (to float rounding); answer choices that share a question reuse its KV
cache, so multiple choice through the server costs about what it costs directly. Any other Model exposes `loglikelihood(context,
continuation)` but not its tokenizer; the server then splits the text into pieces (a word or a
punctuation mark with the whitespace before it; see `split_pieces`) and reports, for each piece
after the first, `model.loglikelihood(text before the piece, piece)` as that "token"'s logprob.
By the chain rule the pieces of a continuation sum to its log-likelihood whenever it starts at a
piece boundary (as answers such as " Paris" or " B" do); a piece's `top_logprobs` lists the piece
when greedy decoding would produce it and is empty otherwise (the Model says whether, not what).
This costs one request per piece over all the text before it, so it suits short prompts.

Fault injection (`FaultPlan`) makes chosen requests to the two POST endpoints fail the way real
servers do: `429` (with Retry-After), `500`, `hang` (no answer until the client gives up),
`malformed` (a 200 with truncated JSON), `drop` (the connection closes after the headers),
`400` (a bad-request answer, which a client must not retry), and 200 replies that carry no answer:
`nochoices` (an empty `choices` list), `notext` (a choice without `text`, or a chat message without
`content`), `nulltext` (`text` / `content` null) and `wrongobject` (an `object` of another type).
`empty` is not a fault but a legitimate empty answer (`""` with finish_reason "stop"), which a
client must keep. `ServerStats.answered` counts the model's real (200) answers.
"""


from capeval.models.serve.app import ServerThread, create_app, serve, serving
from capeval.models.serve.faults import BROKEN_REPLIES, FAULT_KINDS, MODEL_PATHS, FaultPlan, ServerStats
from capeval.models.serve.prompt_logprobs import (
    HFTokenScorer,
    PieceScorer,
    TokenScore,
    prompt_scorer,
    split_pieces,
)
from capeval.models.serve.protocol import BadRequest, ModelNotFound, error_body
from capeval.models.serve.runner import ClientGone, ModelRunner

__all__ = [
    "BROKEN_REPLIES",
    "FAULT_KINDS",
    "MODEL_PATHS",
    "BadRequest",
    "ClientGone",
    "FaultPlan",
    "HFTokenScorer",
    "ModelNotFound",
    "ModelRunner",
    "PieceScorer",
    "ServerStats",
    "ServerThread",
    "TokenScore",
    "create_app",
    "error_body",
    "prompt_scorer",
    "serve",
    "serving",
    "split_pieces",
]
