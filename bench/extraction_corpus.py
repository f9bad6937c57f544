"""Generate the extraction regression corpus: real outputs of the bundled models on questions this
script writes itself (GSM8K-, MATH-, BBH-, DROP- and MMLU-style, in the benchmarks' own field
names) and on the packaged HumanEval problems, through capeval's own tasks and engine.

    python bench/extraction_corpus.py --out tests/fixtures/extraction_corpus [--per-model 50]

Writes one `<task>.jsonl` per task, one row per response: model, task, prompt, generation params,
raw output and the gold target. The labels a human gives are added afterwards (see the corpus's
README); the tests never generate. Questions are drawn from a fixed seed, so a re-run writes the
same questions (the outputs follow the models and their de-quantised weights).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

MODELS = ("smollm2-135m-instruct", "gemma3-270m")

# ---- question writers ------------------------------------------------------------------------------


def gsm8k_rows(rng: random.Random, n: int) -> list[dict]:
    """Word problems with integer answers, about a third of them negative."""
    names = ["Ada", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "June"]
    rows = []
    for i in range(n):
        name = rng.choice(names)
        kind = i % 6
        if kind == 0:
            a, b = rng.randint(2, 15), rng.randint(16, 40)
            q = f"At noon the temperature was {a} degrees. By midnight it had fallen by {b} degrees. What was the temperature at midnight, in degrees?"
            sol, ans = f"The temperature fell from {a} by {b}, so it was {a} - {b} = {a - b} degrees.", a - b
        elif kind == 1:
            has, spend = rng.randint(10, 60), rng.randint(61, 150)
            q = f"{name} has ${has} in a bank account and pays a bill of ${spend} from it. What is the account balance after paying, in dollars?"
            sol, ans = f"The balance is {has} - {spend} = {has - spend} dollars.", has - spend
        elif kind == 2:
            boxes, per, eaten = rng.randint(3, 9), rng.randint(4, 12), rng.randint(1, 10)
            q = f"{name} buys {boxes} boxes of cookies with {per} cookies in each box and eats {eaten} cookies. How many cookies are left?"
            sol, ans = f"{name} bought {boxes} * {per} = {boxes * per} cookies. {boxes * per} - {eaten} = {boxes * per - eaten} are left.", boxes * per - eaten
        elif kind == 3:
            price, qty, paid = rng.randint(2, 9), rng.randint(2, 8), 100
            q = f"{name} buys {qty} notebooks at ${price} each and pays with a $100 bill. How much change does {name} get, in dollars?"
            sol, ans = f"The notebooks cost {qty} * {price} = {qty * price} dollars. The change is {paid} - {qty * price} = {paid - qty * price} dollars.", paid - qty * price
        elif kind == 4:
            floor, down = rng.randint(1, 5), rng.randint(6, 12)
            q = f"An elevator is on floor {floor}. It goes down {down} floors to the parking levels, which are numbered below zero. On which floor number does it stop?"
            sol, ans = f"It goes from floor {floor} down {down} floors: {floor} - {down} = {floor - down}.", floor - down
        else:
            speed, hours, extra = rng.randint(30, 70), rng.randint(2, 6), rng.randint(5, 40)
            q = f"A train travels at {speed} miles per hour for {hours} hours and then {extra} more miles. How many miles does it travel in total?"
            sol, ans = f"It travels {speed} * {hours} = {speed * hours} miles, then {extra} more: {speed * hours} + {extra} = {speed * hours + extra} miles.", speed * hours + extra
        rows.append({"question": q, "answer": f"{sol}\n#### {ans}"})
    return rows


def math_rows(rng: random.Random, n: int) -> list[dict]:
    """Short algebra problems with LaTeX answers (fractions, negatives, roots, pairs)."""
    from fractions import Fraction

    rows = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            a, b = rng.randint(2, 9), rng.randint(-30, 30)
            c = rng.randint(-30, 30)
            x = Fraction(c - b, a)
            q = f"Solve for $x$: ${a}x + {b} = {c}$." if b >= 0 else f"Solve for $x$: ${a}x - {-b} = {c}$."
            ans = _latex_frac(x)
            sol = f"Subtracting and dividing by {a} gives $x = {ans}$, so the answer is $\\boxed{{{ans}}}$."
        elif kind == 1:
            p, q1, r, s = rng.randint(1, 9), rng.randint(2, 9), rng.randint(1, 9), rng.randint(2, 9)
            v = Fraction(p, q1) - Fraction(r, s)
            q = f"Compute $\\frac{{{p}}}{{{q1}}} - \\frac{{{r}}}{{{s}}}$. Express your answer as a common fraction."
            ans = _latex_frac(v)
            sol = f"With a common denominator the difference is $\\boxed{{{ans}}}$."
        elif kind == 2:
            k, m = rng.choice([2, 3, 5, 6, 7]), rng.randint(2, 6)
            q = f"Simplify $\\sqrt{{{k * m * m}}}$."
            ans = f"{m}\\sqrt{{{k}}}"
            sol = f"$\\sqrt{{{k * m * m}}} = \\sqrt{{{m * m}}}\\cdot\\sqrt{{{k}}} = \\boxed{{{ans}}}$."
        elif kind == 3:
            a, b = rng.randint(-9, 9), rng.randint(-9, 9)
            q = f"The lines $y = x + {b - a}$ and $y = -x + {a + b}$ meet at a point $(x, y)$. What is that point?".replace("+ -", "- ")
            ans = f"({a}, {b})"
            sol = f"Setting the two equal gives $x = {a}$ and then $y = {b}$, so the point is $\\boxed{{{ans}}}$."
        else:
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            q = f"What is the value of $({a} - {a + b})^3$?"
            ans = str((-b) ** 3)
            sol = f"$({a} - {a + b})^3 = (-{b})^3 = \\boxed{{{ans}}}$."
        rows.append({"problem": q, "solution": sol, "type": "Algebra", "level": "Level 1"})
    return rows


def _latex_frac(v) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    sign = "-" if v < 0 else ""
    return f"{sign}\\frac{{{abs(v.numerator)}}}{{{v.denominator}}}"


def bbh_arithmetic_rows(rng: random.Random, n: int) -> list[dict]:
    """BBH multistep_arithmetic_two's own form: ((a op b op c) op (d op e op f)) =, many negative."""
    rows = []
    for _ in range(n):
        def part() -> str:
            nums = [rng.randint(-9, 9) for _ in range(3)]
            ops = [rng.choice("+-*") for _ in range(2)]
            return f"({nums[0]} {ops[0]} {nums[1]} {ops[1]} {nums[2]})"

        expr = f"({part()} {rng.choice('+-*')} {part()})"
        rows.append({"input": f"{expr} =", "target": str(eval(expr))})  # our own digits and operators
    return rows


def bbh_boolean_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        terms = [rng.choice(["True", "False", "not True", "not False"]) for _ in range(3)]
        ops = [rng.choice(["and", "or"]) for _ in range(2)]
        expr = f"{terms[0]} {ops[0]} {terms[1]} {ops[1]} {terms[2]}"
        rows.append({"input": f"{expr} is", "target": str(eval(expr))})
    return rows


def drop_rows(rng: random.Random, n: int) -> list[dict]:
    """Game summaries with a number or a name as the answer (DROP's two commonest answer types)."""
    teams = ["Bears", "Packers", "Lions", "Vikings", "Eagles", "Giants", "Falcons", "Saints"]
    players = ["Jay Cutler", "Matt Forte", "Aaron Rodgers", "Calvin Johnson", "Adrian Peterson", "Eli Manning", "Matt Ryan", "Drew Brees"]
    rows = []
    for i in range(n):
        home, away = rng.sample(teams, 2)
        p1, p2 = rng.sample(players, 2)
        y1, y2, y3 = rng.randint(1, 60), rng.randint(1, 60), rng.randint(20, 55)
        passage = (
            f"The {home} hosted the {away}. In the first quarter {p1} threw a {y1}-yard touchdown pass. "
            f"The {away} answered when {p2} ran {y2} yards for a score. In the third quarter the {home} kicked "
            f"a {y3}-yard field goal, and neither team scored again."
        )
        kind = i % 4
        if kind == 0:
            question, spans, types = "How many yards was the longest scoring play?", [str(max(y1, y2, y3))], ["number"]
        elif kind == 1:
            question, spans, types = "Who threw the touchdown pass?", [p1], ["span"]
        elif kind == 2:
            question, spans, types = f"How many more yards was the field goal than {p2}'s run?", [str(y3 - y2)], ["number"]
        else:
            question, spans, types = "Which team kicked the field goal?", [home], ["span"]
        rows.append({"section_id": f"game_{i}", "query_id": f"q{i}", "passage": passage, "question": question,
                     "answers_spans": {"spans": spans, "types": types}})
    return rows


def mmlu_rows(rng: random.Random, n: int) -> list[dict]:
    """Four-choice arithmetic and geography questions in cais/mmlu's fields."""
    capitals = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Canada", "Ottawa"),
                ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Chile", "Santiago"), ("India", "New Delhi"), ("Spain", "Madrid")]
    rows = []
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.randint(3, 15), rng.randint(3, 15)
            right = a * b
            wrong = {right + d for d in (-a, a, b, 1, -1, 10)} - {right}
            choices = [str(right), *map(str, rng.sample(sorted(wrong), 3))]
            question = f"What is {a} times {b}?"
        else:
            country, city = rng.choice(capitals)
            others = rng.sample([c for _, c in capitals if c != city], 3)
            choices = [city, *others]
            question = f"What is the capital of {country}?"
        rng.shuffle(choices)
        answer = choices.index(str(right) if i % 2 == 0 else city)
        rows.append({"question": question, "choices": choices, "answer": answer, "subject": "elementary_mathematics"})
    return rows


# ---- generation -------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_data(folder: Path, per_model: int) -> dict[str, tuple[str, dict]]:
    """task -> (data path, settings): test items for `per_model` responses per model, plus exemplars."""
    rng = random.Random(20261126)
    write_jsonl(folder / "gsm8k" / "train.jsonl", gsm8k_rows(rng, 8))
    write_jsonl(folder / "gsm8k" / "test.jsonl", gsm8k_rows(rng, per_model))
    write_jsonl(folder / "math" / "train.jsonl", math_rows(rng, 5))
    write_jsonl(folder / "math" / "test.jsonl", math_rows(rng, per_model))
    write_jsonl(folder / "bbh_arith.jsonl", bbh_arithmetic_rows(rng, per_model + 3))
    write_jsonl(folder / "bbh_bool.jsonl", bbh_boolean_rows(rng, per_model + 3))
    write_jsonl(folder / "drop" / "validation.jsonl", drop_rows(rng, per_model + 3))
    write_jsonl(folder / "mmlu" / "dev.jsonl", mmlu_rows(rng, 5))
    write_jsonl(folder / "mmlu" / "test.jsonl", mmlu_rows(rng, per_model))
    return {
        "gsm8k": (str(folder / "gsm8k"), {"shots": 2, "max_tokens": 160}),
        "math_algebra": (str(folder / "math"), {"shots": 2, "max_tokens": 160}),
        "bbh_multistep_arithmetic_two": (str(folder / "bbh_arith.jsonl"), {"max_tokens": 32}),
        "bbh_boolean_expressions": (str(folder / "bbh_bool.jsonl"), {"max_tokens": 32}),
        "drop": (str(folder / "drop"), {"max_tokens": 32}),
        "mmlu_gen": (str(folder / "mmlu"), {"max_tokens": 8}),
        "humaneval": ("", {"max_tokens": 192}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/extraction_corpus"))
    ap.add_argument("--per-model", type=int, default=50)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--tasks", default="")
    ap.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "capeval-extraction-corpus.db")
    args = ap.parse_args()

    from capeval.engine import evaluate_tasks
    from capeval.models import load_model
    from capeval.prompting import PromptConfig
    from capeval.store import Store
    from capeval.tasks import get_task

    data_dir = Path(tempfile.mkdtemp(prefix="capeval-corpus-data-"))
    tasks = build_data(data_dir, args.per_model)
    wanted = [t for t in args.tasks.split(",") if t] or list(tasks)
    store = Store(args.db)
    for model_name in args.models.split(","):
        model = load_model(model_name)
        for task_name in wanted:
            data, settings = tasks[task_name]
            task = get_task(task_name, data=data or None)
            task.generation = replace(task.generation, max_tokens=settings["max_tokens"])
            # chat for the instruct model, plain completion for the base-style one: both formats occur
            config = PromptConfig(shots=settings.get("shots"), chat=model_name.startswith("smollm2"))
            result = evaluate_tasks(model, [task], config=config, store=store, limit=args.per_model, progress=False)
            rows = []
            for s in store.iter_samples(result.run_id):
                rows.append({
                    "model": model_name,
                    "task": task_name,
                    "id": s["sample_id"],
                    "prompt": s["prompt"],
                    "params": {**asdict(task.generation), "shots": config.shots, "chat": config.chat},
                    "output": s["response"][0]["text"],
                    "finish_reason": s["response"][0].get("finish_reason"),
                    "target": s["target"],
                })
            out = args.out / f"{task_name}.jsonl"
            old = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
            old = [r for r in old if r["model"] != model_name]
            write_jsonl(out, old + rows)
            print(f"{model_name} {task_name}: {len(rows)} responses -> {out}", flush=True)


if __name__ == "__main__":
    main()
