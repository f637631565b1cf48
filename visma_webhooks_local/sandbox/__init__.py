"""An embedded Visma.net ERP API sandbox: a threaded HTTP server on loopback.

It stands in for Visma Connect and the ERP API in the local stack, the tests and the
benchmarks. In-process::

    with VismaSandbox(port=0, latency=0.05) as sandbox:
        client = VismaClient(sandbox.url, sandbox.token_url, "id", "secret")
        ...
        sandbox.feedback  # what the processor posted

or as a process: ``python -m visma_webhooks_local.sandbox --port 8099 [--latency S]
[--error-rate F] [--throttle-rate F] [--timeout-rate F] [--fixtures FILE]``, which prints
``Visma sandbox listening on http://127.0.0.1:PORT`` once it accepts connections.

Endpoints

* ``POST /connect/token``: client credentials (form fields, or HTTP Basic for the
  client). ``tenant_id`` is required; ``client_id``/``client_secret`` are checked when
  the sandbox was given them. The token is bound to the tenant and lasts ``token_ttl``.
* ``GET /v1/{entity}/{id...}`` (Bearer token): the document stored under that path in
  the fixtures (a JSON object mapping paths to documents; by default the project's
  ``events/visma-resources.json``, or none where that file is absent). A path that is not
  in the fixtures is *synthesised* as
  ``{"id": ..., "entity": ..., "synthetic": true}`` so that load tests can use any id,
  unless ``synthesize=False``. An id with a segment starting with ``missing``
  (``/v1/customer/missing-7``) is always 404, fixtures or not. Anything else is 404.
* ``POST /v1/webhooknotificationfeedback``: recorded as ``{tenant, notificationId,
  source, description, isSuccess, received_at}``; answers 201.
* Other writes under ``/v1/`` (POST, PUT, PATCH, DELETE) are recorded in ``writes`` and
  answered 201 (POST) or 204.

Every response outside the control API carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds until the tenant's window
resets). Each authenticated API call uses one unit of the tenant's ``rate_limit`` per
``rate_window`` (default 100,000 per hour, so that only tests that lower it meet it);
past it the answer is 429 with ``Retry-After``.

Fault injection (API calls under ``/v1/`` only): ``latency`` seconds before every answer;
``timeout_rate``: that fraction of calls hangs ``timeout_seconds`` before answering;
``error_rate``: answered 503; ``throttle_rate``: answered 429 with ``Retry-After: 1``.
``seed`` makes the draws reproducible. Per-path rules apply to any path, the token
endpoint included, and are checked first, in order::

    {"path": "/v1/customer/42", "status": 503, "times": 2}  # fail twice, then serve
    {"path": "/v1/customer/*", "status": 404}                # glob, for good
    {"path": "/v1/customer/7", "delay": 5}                   # hang 5 s, then serve
    {"path": "/v1/customer/8", "status": 429, "retry_after": 30, "headers": {...}}

Optional rule fields: ``method``, ``tenant``, ``body`` (the JSON to answer with).

Control API (not in the request log):

* ``GET /_sandbox/feedback``, ``GET /_sandbox/writes``;
* ``GET /_sandbox/requests``: method, path, query, tenant, status, time, duration,
  fault (token requests also client_id and scope, never the secret);
* ``GET|POST /_sandbox/faults``: the settings above; a body with ``path`` adds one
  rule, ``rules`` replaces them all;
* ``POST /_sandbox/resources``: ``{path: document}`` adds or replaces documents;
* ``POST /_sandbox/revoke-tokens`` (optionally ``{"tenant": ...}``);
* ``POST /_sandbox/reset``: fault settings back to their start values; logs, rules,
  rate windows and documents reset (issued tokens stay valid);
* ``GET /_sandbox/health``.

The same operations are methods and properties of :class:`VismaSandbox`.

Modules: :mod:`.server` (HTTP and the ERP API), :mod:`.tokens`, :mod:`.faults` (faults
and rate limits), :mod:`.control` (the control API), :mod:`.fixtures`.
"""

from visma_webhooks_local.sandbox.faults import Rule
from visma_webhooks_local.sandbox.server import VismaSandbox

__all__ = ["Rule", "VismaSandbox"]
