"""A store with three models' runs over the same questions, and the web app over it."""

from __future__ import annotations

import pytest
from web_fixtures import AnnotationFixture, build


@pytest.fixture
def annotation(tmp_path) -> AnnotationFixture:
    return build(tmp_path / "capeval.db")
