"""The published API description against the running sidecar: schemathesis generates
requests from /openapi.json (valid deliveries, and deliveries that break the schema),
signs each body as Alchemy would, and checks every answer: never a 5xx, every status and
body as documented, and whatever the schema calls invalid refused with a 4xx."""

from __future__ import annotations

from collections import Counter
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.webhook.helpers import NEW_KEY, Service
from webhook_service.signature import sign

# positive_data_acceptance is left out on purpose: a delivery can match the schema and
# still be refused for what it means (a matching log that does not decode, a block hash
# that contradicts its log), which the schema cannot express.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES = {GenerationMode.POSITIVE: 150, GenerationMode.NEGATIVE: 150}
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples every run: a failure reproduces
    database=None,
    suppress_health_check=list(HealthCheck),
)


def send(session: requests.Session, url: str, case: schemathesis.Case) -> requests.Response:
    """The request of `case` as schemathesis serializes it, signed over its exact body."""
    request = requests.Request(**case.as_transport_kwargs(base_url=url)).prepare()
    body = request.body.encode() if isinstance(request.body, str) else request.body
    if body is not None:
        request.headers["x-alchemy-signature"] = sign(body, NEW_KEY)
    return session.send(request, timeout=10)


def run(webhook: Service, strategy: Any, examples: int, label: str, statuses: Counter[Any]) -> None:
    session = requests.Session()

    @settings(FUZZ, max_examples=examples)
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        response = send(session, webhook.url, case)
        statuses[(label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    with session:
        check()


def test_schemathesis_finds_no_5xx_and_no_schema_violation(webhook: Service) -> None:
    schema = schemathesis.openapi.from_dict(webhook.http.get("/openapi.json").json())
    statuses: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/webhooks/alchemy", "/healthz", "/readyz"}
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        # A GET without parameters has nothing to break: negative mode only for the POST.
        modes = EXAMPLES if operation.method == "post" else {GenerationMode.POSITIVE: 5}
        for mode, examples in modes.items():
            run(webhook, operation.as_strategy(generation_mode=mode), examples, label, statuses)
    print("\nschemathesis answers:", dict(sorted(statuses.items())))
    assert not [key for key in statuses if key[1] >= 500]
    # the run reached the store, not only the validation: some deliveries were answered 200
    assert (
        statuses[("POST /webhooks/alchemy", 200)] > 0
        and statuses[("POST /webhooks/alchemy", 400)] > 0
    )
