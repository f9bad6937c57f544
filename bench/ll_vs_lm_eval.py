"""A YAML `output_type: loglikelihood` task, capeval vs lm-evaluation-harness, item by item.

Last-word prediction (LAMBADA's form) on the 48 word problems of bench/data/gen48.jsonl: the text
up to its last word is the context, " " + the last word the scored continuation. capeval runs the
YAML spec below through the bundled SmolLM2 (float32, batch 16); lm-eval 0.4.13 runs the same
templates as a task with `output_type: loglikelihood` on the same weights. Prints whether every
context and continuation is the same text, the largest log-likelihood difference, how many items
agree on "the target is the greedy continuation", and both accuracies. Not a speed script.

    pip install 'lm-eval==0.4.13'
    python bench/ll_vs_lm_eval.py [--items 48] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parent / "data" / "gen48.jsonl"
MODEL = "smollm2-135m-instruct"
CONTEXT = "text.rsplit(' ', 1)[0]"
TARGET = "' ' + text.rsplit(' ', 1)[1]"
CAPEVAL_SPEC = f"""name: last-word
source: {{local: items.jsonl}}
output_type: loglikelihood
scorer: greedy_target
id: "d{{{{ n }}}}"
question: "{{{{ {CONTEXT} }}}}"
target: "{{{{ {TARGET} }}}}"
"""
LM_EVAL_SPEC = """task: last_word
dataset_path: json
dataset_kwargs:
  data_files:
    test: {items}
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{ {context} }}}}"
doc_to_target: "{{{{ {target} }}}}"
metric_list:
  - metric: acc
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from capeval.engine import execute, plan_task
    from capeval.models import load_model
    from capeval.models.bundled import ensure_weights
    from capeval.prompting import PromptConfig
    from capeval.tasks.yaml_spec import build_task, parse_spec

    questions = [json.loads(line)["question"] for line in DATA.read_text().splitlines() if line.strip()]
    docs = [{"n": i, "text": q.rstrip("?.")} for i, q in enumerate(questions[: args.items])]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        items = folder / "items.jsonl"
        items.write_text("".join(json.dumps(d) + "\n" for d in docs))
        (folder / "last_word.yaml").write_text(CAPEVAL_SPEC)
        task = build_task(parse_spec(folder / "last_word.yaml"))
        plan = plan_task(task, PromptConfig())
        model = load_model(MODEL, batch_size=16)
        responses, _ = execute(model, [rs[0] for rs in plan.requests], None)
        ours = [(r.logprobs[0], r.is_greedy[0]) for r in responses]

        (folder / "lm").mkdir()
        (folder / "lm" / "last_word.yaml").write_text(LM_EVAL_SPEC.format(items=items, context=CONTEXT, target=TARGET))
        lm = HFLM(pretrained=str(ensure_weights(MODEL)), batch_size=16, device="cpu", dtype="float32")
        out = lm_eval.simple_evaluate(
            model=lm, tasks=["last_word"], task_manager=TaskManager(include_path=str(folder / "lm")),
            log_samples=True, verbosity="ERROR",
        )
    samples = sorted(out["samples"]["last_word"], key=lambda s: s["doc_id"])
    theirs = [(float(s["resps"][0][0][0]), bool(s["resps"][0][0][1])) for s in samples]
    same_text = all(
        tuple(s["arguments"][0]) == (prompt, reqs[0].continuations[0])
        for s, prompt, reqs in zip(samples, plan.prompts, plan.requests, strict=True)
    )
    report = {
        "items": len(ours),
        "same_context_and_continuation": same_text,
        "max_abs_loglikelihood_diff": max(abs(a[0] - b[0]) for a, b in zip(ours, theirs)),
        "greedy_agree": sum(a[1] == b[1] for a, b in zip(ours, theirs)),
        "capeval_acc": sum(a[1] for a in ours) / len(ours),
        "lm_eval_acc": out["results"]["last_word"]["acc,none"],
    }
    print(f"{report['items']} items: same context and continuation: {same_text}; largest log-likelihood "
          f"difference {report['max_abs_loglikelihood_diff']:.2e}; greedy verdicts agree on "
          f"{report['greedy_agree']}/{report['items']}; acc capeval {report['capeval_acc']:.4f}, "
          f"lm-eval {report['lm_eval_acc']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
