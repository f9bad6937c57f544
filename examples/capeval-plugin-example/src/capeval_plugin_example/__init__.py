"""An example capeval plugin: one task, one backend, one scorer, one judge recipe, one command."""

from pathlib import Path

# the `capeval.recipes` entry point `terse` names this template file
TERSE_RECIPE = Path(__file__).parent / "terse.jinja"
