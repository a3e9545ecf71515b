"""A schema fuzzer (schemathesis) over every operation of the OpenAPI schema, against the app on the real
database, broker and storage, with a valid key: no 5xx, and every documented answer matches its schema. Bounded:
FUZZ_EXAMPLES generated cases per operation, no shrinking."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from tests.conftest import auth, make_user

FUZZ_EXAMPLES = 6


def _operations() -> list[tuple[str, str]]:
    from api.app import create_app
    from core.settings import Settings

    paths = create_app(settings=Settings(_env_file=None)).openapi()["paths"]  # type: ignore[call-arg]
    return [(path, method) for path, item in sorted(paths.items()) for method in sorted(item)]


@pytest.fixture(scope="module")
def api_schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def fuzz_user(client: Any) -> dict[str, str]:
    return make_user(client)


@pytest.mark.parametrize(("path", "method"), _operations())
def test_no_server_error_and_every_answer_matches_the_schema(path: str, method: str, api_schema: Any,
                                                             fuzz_user: dict[str, str]) -> None:  # fmt: skip
    operation = api_schema[path][method.upper()]

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), database=None)  # fmt: skip
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        case.call_and_validate(headers=auth(fuzz_user),
                               checks=[not_a_server_error, response_schema_conformance, content_type_conformance])

    fuzz()
