"""The OpenAPI description, and schemathesis requests generated from it: no request makes the API fail (5xx)."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from knowtrace.serve.app import create_app
from knowtrace.serve.settings import ServeSettings


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/events", "/xapi/statements", "/v1/predict", "/v1/learners/{learner_id}/mastery",
            "/v1/learners/{learner_id}/next-items", "/v1/cat/sessions", "/v1/cat/sessions/{session_id}",
            "/v1/cat/sessions/{session_id}/responses", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][0] == {"$ref": "#/components/schemas/InteractionEvent"}
    assert body["oneOf"][1]["maxItems"] == 10_000
    event = spec["components"]["schemas"]["InteractionEvent"]
    assert {"learner_id", "item_id"} <= set(event["required"])
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`knowtrace keys create --tenant NAME`), sent as `Authorization: Bearer KEY`."}
    xapi = spec["paths"]["/xapi/statements"]["post"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in xapi] == [("X-Experience-API-Version", "header", True)]
    assert client.get("/docs").status_code == 200


@pytest.fixture
def api_schema(settings: ServeSettings, acme_key: str):  # type: ignore[no-untyped-def]
    """The app's schema, loaded from the app (``acme_key`` exists before it answers requests)."""
    app = create_app(settings)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.services.close()


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(max_examples=25, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_generated_requests_never_fail_the_server(case, acme_key: str) -> None:  # type: ignore[no-untyped-def]
    response = case.call(headers={"Authorization": f"Bearer {acme_key}"})
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
