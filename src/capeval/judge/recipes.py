"""Judge recipes: Jinja2 template files (system, user and reminder blocks) with a small YAML header.

Every built-in recipe is a file in capeval/judge/templates/ (other packages add theirs through
`capeval.recipes` entry points); `capeval judge-recipes` prints their paths. To change a rubric, copy
a file, edit it and pass it with `--recipe-file PATH` to any judged command or task (the file replaces
the recipe its header names), or use `get_recipe(name, path=PATH)`. The header, a Jinja comment at the top of the file, declares:

    {#- capeval judge recipe
    name: single            # any name; it becomes part of the judge calls' task label
    kind: single            # single (one response) | pairwise (responses A and B, judged in both orders)
    verdict: bracket        # bracket "[[X]]" | score_of_max "Score: X/<max>" | pairwise "[[A]]/[[B]]/[[C]]"
    scale: [1, 10]          # the score's range (ignored for pairwise)
    max_tokens: 1024        # the judge's output budget
    uses_references: false  # whether the template shows the human-rated reference responses
    addons: [tool_use, tool_use_cross, long_context]
    attached_chars: 24000   # long-context attachments are cut to this many characters
    authors_parser: crosseval  # the benchmark authors' parser its verdicts are audited against:
                               # crosseval | fastchat | fastchat_pairwise | instructeval | none
                               # (default: crosseval for score_of_max on 1-5, fastchat for bracket,
                               # fastchat_pairwise for pairwise)
    -#}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from capeval import plugins
from capeval.errors import CapevalError, UnknownNameError
from capeval.judge.parse import VerdictFormat
from capeval.plugins import Registry
from capeval.types import Message

if TYPE_CHECKING:
    import jinja2

    from capeval.judge.core import JudgeItem

RecipeKind = Literal["single", "pairwise"]
ADDONS = ("tool_use", "tool_use_cross", "long_context")
_HEADER = re.compile(r"\A\s*\{#-?\s*capeval judge recipe\s*\n(.*?)-?#\}", re.DOTALL)
# A response could close our data tag itself and then speak as the user; closing tags of the data
# tags inside data are defused so the judge always sees one well-formed block per datum.
_CLOSING_DATA_TAG = re.compile(
    r"</(\s*)(prompt|response|response_a|response_b|reference_response|reference_answer|attached_document|"
    r"conversation|conversation_a|conversation_b)\b",
    re.IGNORECASE,
)


class RecipeError(CapevalError):
    """A judge recipe file that cannot be read or rendered."""


@dataclass(frozen=True)
class JudgeRecipe:
    """A judge prompt template with the facts needed to use and parse it."""

    name: str
    kind: RecipeKind
    verdict: VerdictFormat
    scale: tuple[float, float]
    source: str = field(repr=False)
    path: str | None = None
    description: str = ""
    max_tokens: int = 1024
    uses_references: bool = False
    addons: tuple[str, ...] = ()
    attached_chars: int = 24000
    authors_parser: str | None = None

    @property
    def pairwise(self) -> bool:
        return self.kind == "pairwise"

    def render(self, item: JudgeItem, n_references: int | None = None) -> tuple[Message, ...]:
        """The chat messages for one item: a system rubric (if the template has one) and the user turn."""
        template = _compile(self.source, self.path or self.name)
        context = template.new_context(self.variables(item, n_references))
        messages = []
        for role in ("system", "user"):
            if role in template.blocks:
                text = "".join(template.blocks[role](context)).strip()
                if text:
                    messages.append(Message(role, text))
        if not messages or messages[-1].role != "user":
            raise RecipeError(f"recipe '{self.name}' has no user block", "add {% block user %}...{% endblock %}")
        return tuple(messages)

    def reminder(self, error: str) -> str:
        """The text appended to the user turn when the verdict could not be parsed."""
        template = _compile(self.source, self.path or self.name)
        lo, hi = self.scale
        variables = {"error": error, "scale_min": _num(lo), "scale_max": _num(hi)}
        if "reminder" in template.blocks:
            text = "".join(template.blocks["reminder"](template.new_context(variables))).strip()
            if text:
                return text
        return f"Reminder: your previous answer could not be read ({error}). Follow the required output format exactly."

    def variables(self, item: JudgeItem, n_references: int | None = None) -> dict[str, Any]:
        refs = item.references if n_references is None else item.references[: max(0, n_references)]
        if not self.uses_references:
            refs = ()
        attached, cut = item.attached, 0
        if attached is not None and len(attached) > self.attached_chars:
            cut = len(attached) - self.attached_chars
            attached = attached[: self.attached_chars]
        lo, hi = self.scale
        return {
            "prompt": item.prompt,
            "response": item.response,
            "response_b": item.response_b,
            "history": [{"role": m.role, "content": m.content} for m in item.history],
            "history_b": [{"role": m.role, "content": m.content} for m in item.history_b],
            "references": [
                {
                    "response": r.response,
                    "ratings": [
                        {"rating": _num(x), "explanation": r.explanations[j] if j < len(r.explanations) else ""}
                        for j, x in enumerate(r.ratings)
                    ],
                }
                for r in refs
            ],
            "reference_answer": item.reference_answer,
            "reference_history": list(item.reference_history),
            "capability": item.capability or "",
            "attached": attached,
            "attached_cut_chars": cut,
            "addons": active_addons(item.capability, self.addons),
            "scale_min": _num(lo),
            "scale_max": _num(hi),
            "metadata": dict(item.metadata),
        }


def active_addons(capability: str | None, declared: tuple[str, ...]) -> dict[str, bool]:
    """Which capability add-ons apply: tool use (and tool use combined with another capability), long context."""
    cap = (capability or "").lower()
    tool = "tool use" in cap or "tool_use" in cap
    active = {
        "tool_use": tool,
        "tool_use_cross": tool and "&" in cap,
        "long_context": "long context" in cap or "long_context" in cap,
    }
    return {k: active[k] and k in declared for k in ADDONS}


def defuse(text: Any) -> str:
    """Jinja filter `data`: the text with closing tags of capeval's data tags broken up."""
    return _CLOSING_DATA_TAG.sub(lambda m: "<\u200b/" + m.group(1) + m.group(2), "" if text is None else str(text))


def _num(x: Any) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return str(int(f)) if f.is_integer() else f"{f:g}"


@lru_cache(maxsize=64)
def _compile(source: str, label: str) -> jinja2.Template:
    import jinja2

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, autoescape=False
    )
    env.filters["data"] = defuse
    env.filters["num"] = _num
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise RecipeError(f"judge recipe {label}: template error on line {e.lineno}: {e.message}") from e


def templates_dir() -> Path:
    return Path(str(resources.files("capeval.judge") / "templates"))


# capeval's own recipes: the `capeval.recipes` entry point "builtin" names this folder
TEMPLATES_DIR = templates_dir()

# recipe name -> template file; capeval's and other packages' `capeval.recipes` entry points
RECIPES: Registry[Path] = Registry("judge recipe", "capeval.recipes")
_recipes_loaded = False


def _ensure_recipes() -> None:
    """Read every `capeval.recipes` entry point: a template file (the recipe is the entry point's
    name) or a folder of them (each file's stem is a recipe)."""
    global _recipes_loaded
    if _recipes_loaded:
        return
    _recipes_loaded = True
    for ep, origin in plugins.discover("capeval.recipes"):
        target = Path(str(plugins.load(ep, origin)))
        if target.is_dir():
            for file in sorted(target.glob("*.jinja")):
                RECIPES.add(file.stem, file, origin)
        elif target.is_file():
            RECIPES.add(ep.name, target, origin)
        else:
            raise plugins.PluginLoadError(f"{origin}: judge recipe template not found: {target}")


def recipe_names() -> list[str]:
    _ensure_recipes()
    return sorted(RECIPES)


def recipe_path(name: str) -> Path:
    """The template file of a registered recipe (capeval's or a plugin's)."""
    _ensure_recipes()
    if name not in RECIPES:
        raise UnknownNameError("judge recipe", name, recipe_names())
    return RECIPES[name]


builtin_path = recipe_path  # the name judge commands and tests used before plugins could add recipes


def recipe_origin(name: str) -> str | None:
    _ensure_recipes()
    return RECIPES.origin(name)


def get_recipe(name: str, path: str | Path | None = None) -> JudgeRecipe:
    """A registered recipe by name, or the recipe in the template file `path` (a user's edited copy)."""
    file = Path(path) if path is not None else recipe_path(name)
    if not file.is_file():
        raise RecipeError(f"judge recipe file not found: {file}", "copy a built-in one: `capeval judge-recipes` lists them")
    return load_recipe_text(file.read_text(encoding="utf-8"), str(file), default_name=name)


def load_recipe_files(paths: Sequence[str | Path]) -> dict[str, JudgeRecipe]:
    """Edited recipe files (`--recipe-file`) by the recipe each replaces: the `name` in its header
    (a copy of crosseval.jinja says `name: crosseval`), else the file's stem."""
    out: dict[str, JudgeRecipe] = {}
    for path in paths:
        recipe = get_recipe(Path(path).stem, path=path)
        if recipe.name in out:
            raise RecipeError(
                f"two --recipe-file files replace judge recipe '{recipe.name}': {out[recipe.name].path} and {path}",
                "give one file per recipe",
            )
        out[recipe.name] = recipe
    return out


def pick_recipe(name: str, replacements: Mapping[str, JudgeRecipe] | None = None) -> JudgeRecipe:
    """The recipe `name`, or the user's edited file that replaces it (see load_recipe_files)."""
    if replacements and name in replacements:
        return replacements[name]
    return get_recipe(name)


def check_replacements(replacements: Mapping[str, JudgeRecipe], used: Sequence[str], who: str) -> None:
    """Refuse an edited recipe file that would replace none of the recipes `who` uses (a typo in the
    header's name would otherwise leave the built-in recipe in use without a word)."""
    for name, recipe in replacements.items():
        if name not in used:
            raise RecipeError(
                f"--recipe-file {recipe.path} is recipe '{name}', which {who} does not use",
                f"{who} uses: {', '.join(used)}; set `name:` in the file's header to the recipe it replaces",
            )


def load_recipe_text(source: str, label: str = "<string>", default_name: str = "custom") -> JudgeRecipe:
    """Parse a recipe's header and check that its template compiles."""
    m = _HEADER.match(source)
    if not m:
        raise RecipeError(
            f"{label} has no recipe header",
            "start the file with '{#- capeval judge recipe' followed by YAML (kind, verdict, scale) and '-#}'",
        )
    try:
        head = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{label}: the recipe header is not valid YAML: {e}") from e
    kind = head.get("kind", "single")
    verdict = head.get("verdict", "pairwise" if kind == "pairwise" else "score_of_max")
    if kind not in ("single", "pairwise"):
        raise RecipeError(f"{label}: kind must be 'single' or 'pairwise', not {kind!r}")
    if verdict not in ("score_of_max", "bracket", "pairwise") or (kind == "pairwise") != (verdict == "pairwise"):
        raise RecipeError(
            f"{label}: verdict {verdict!r} does not fit kind {kind!r}",
            "single recipes use 'score_of_max' or 'bracket'; pairwise recipes use 'pairwise'",
        )
    scale = head.get("scale", [1, 5])
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and float(scale[0]) < float(scale[1])):
        raise RecipeError(f"{label}: scale must be [min, max] with min < max, not {scale!r}")
    addons = tuple(head.get("addons") or ())
    unknown = [a for a in addons if a not in ADDONS]
    if unknown:
        raise RecipeError(f"{label}: unknown add-ons {unknown}", f"known add-ons: {', '.join(ADDONS)}")
    authors_parser = _authors_parser(head.get("authors_parser"), verdict, scale, label)
    template = _compile(source, label)
    if "user" not in template.blocks:
        raise RecipeError(f"{label} has no user block", "add {% block user %}...{% endblock %}")
    return JudgeRecipe(
        name=str(head.get("name", default_name)),
        kind=kind,
        verdict=verdict,
        scale=(float(scale[0]), float(scale[1])),
        source=source,
        path=label,
        description=str(head.get("description", "")).strip(),
        max_tokens=int(head.get("max_tokens", 1024)),
        uses_references=bool(head.get("uses_references", False)),
        addons=addons,
        attached_chars=int(head.get("attached_chars", 24000)),
        authors_parser=authors_parser,
    )


def _authors_parser(declared: Any, verdict: str, scale: Any, label: str) -> str | None:
    """The authors' parser a recipe's verdicts are audited against (capeval.judge.authors)."""
    from capeval.judge.authors import AUTHORS_PARSERS

    if declared is None:
        if verdict == "pairwise":
            return "fastchat_pairwise"
        if verdict == "bracket":
            return "fastchat"
        # the CrossEval authors' pattern only reads "X/5"
        return "crosseval" if [float(x) for x in scale] == [1.0, 5.0] else None
    if str(declared).lower() in ("none", "false", ""):
        return None
    if declared not in AUTHORS_PARSERS:
        raise RecipeError(f"{label}: unknown authors_parser {declared!r}", f"known: {', '.join(AUTHORS_PARSERS)}, none")
    return str(declared)
