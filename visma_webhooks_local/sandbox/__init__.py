"""An embedded Visma.net ERP API sandbox: a threaded HTTP server on loopback.

It stands in for Visma Connect and the ERP API services in the local stack, the tests
and the benchmarks. Each service is on its own port, as each is its own host in Visma:
Financials (with Visma Connect and the control API) on ``url``, SalesOrders V3 on
``salesorders_url``, Journal Transactions on ``journaltx_url``. In-process::

    with VismaSandbox(port=0, latency=0.05) as sandbox:
        client = VismaClient(sandbox.url, sandbox.token_url, "id", "secret")
        ...
        sandbox.feedback  # what the processor posted

or as a process: ``python -m visma_webhooks_local.sandbox --port 8099 [--salesorders-port
P] [--journaltx-port P] [--latency S] [--error-rate F] [--throttle-rate F] [--timeout-rate
F] [--fixtures FILE] [--service-fixtures FILE] [--webhook-url URL --webhook-secret S]
[--webhook-delay S] [--no-api-client-id] [--drop-webhooks F] [--calls-per-window N]
[--window-seconds S]``, which prints ``Visma sandbox listening on
http://127.0.0.1:PORT`` once it accepts connections, then one line per service.

Endpoints

* ``POST /connect/token`` (Financials' port): client credentials (form fields, or HTTP
  Basic for the client). ``tenant_id`` is required; ``client_id``/``client_secret`` are
  checked when the sandbox was given them. The token is bound to the tenant and the
  client and lasts ``token_ttl``; it is good on every service's port.
* Financials: ``GET /v1/{entity}/{id...}`` and ``/v2/...`` (Bearer token): the document
  stored under that path in the fixtures (a JSON object mapping paths to documents; by
  default the project's ``events/visma-resources.json``, or none where that file is
  absent). A path that is not in the fixtures is *synthesised* as ``{"id": ...,
  "entity": ..., "synthetic": true}`` so that load tests can use any id, unless
  ``synthesize=False``. An id with a segment starting with ``missing``
  (``/v1/customer/missing-7``) is always 404, fixtures or not. Anything else is 404.
* SalesOrders V3: ``GET /api/v3/SalesOrders/{orderType}/{orderNbr}``; Journal
  Transactions: ``GET /api/v1/JournalTransactions/{batchNumber}``. Their fixtures are
  ``events/visma-services.json`` (service → path → document); other ids are synthesised
  in the service's shape (``orderType``, ``orderNo``, ``status``, ``lines``,
  ``lastModifiedDateTime``, ``timeStamp``...), ``missing`` ids are 404 as above.
* Lists (:mod:`.lists`): ``GET /v1/{entity}`` (``lastModifiedDateTime`` with
  ``lastModifiedDateTimeCondition``, ``pageNumber`` from 1, ``pageSize``; a JSON array,
  each item with ``metadata`` ``{totalCount, maxPageSize}``), ``GET /api/v3/SalesOrders``
  and ``.../SalesOrders/{orderType}`` (``modifiedSince``, ``customerId``, ``status``,
  ``pageIndex`` from 0, ``pageSize``; ``{"value": [...], "totalCount"}``), ``GET
  /api/v1/JournalTransactions`` (as Financials). They show the stored resources (fixtures,
  documents added, written or created; never synthesised or deleted ones) ordered by
  ``lastModifiedDateTime``, then path. Every stored resource has a ``lastModifiedDateTime``
  (given, or set when it is stored) and each change sets a later one.
* ``POST /v1/webhooknotificationfeedback``: recorded as ``{tenant, notificationId,
  source, description, isSuccess, received_at}``; answers 201.
* Writes (POST, PUT, PATCH; answered 201 for POST, else 204) are recorded in ``writes``
  with the writer's tenant and client. A write to one resource also changes it as Visma
  does: the fields as written (a Financials ``{"value": x}`` wrapper shows as ``x``) over
  the stored document, with a new ``lastModifiedDateTime`` and ``timeStamp``; and it
  fires that resource's webhook naming the token's client as ``ApiClientId``
  (:mod:`.webhooks`). A write to a collection is only recorded.
* ``DELETE`` of a resource removes it (later GETs are 404, a second DELETE too) and fires
  its deletion webhook (``Customer Deleted``, ``SALESORDER_DELETED``...).

Webhooks go to the configured URL (``webhooks=WebhookConfig(url, secrets, delay,
api_client_id)``, or :meth:`VismaSandbox.configure_webhooks` while it runs) a short
``delay`` after the change, signed, in the body format of the service's publisher; see
:mod:`.webhooks` for the bodies and headers. Without a URL they are recorded only.

Rate limit (:mod:`.budget`), as Visma's policy ``4-fixed-window``: every authenticated
call, whichever service it goes to (feedback posts included), uses one call of the window
of its token's (tenant, Visma Connect client); the window starts with its first call and
lasts ``rate_window`` seconds, ``rate_limit`` calls in each (default 100,000 an hour, which
the demo and the tests never meet). Every answer outside the control API carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (whole seconds
until the window resets, rounded up) and ``X-RateLimit-Policy: 4-fixed-window``; past the
limit the answer is 429 with ``Retry-After`` and the call is not served. Calls answered by
a per-path rule, and those without a valid token, use none.

Fault injection (API calls of every service): ``latency`` seconds before every answer;
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
* ``GET /_sandbox/requests``: service (``connect`` for tokens), method, path, query,
  tenant, status, time, duration, fault (token requests also client_id and scope, never
  the secret);
* ``GET /_sandbox/calls``: API calls per service and kind (``token``, ``GET``, ``PUT``,
  ``feedback``..., ``total``);
* ``GET /_sandbox/webhooks``: every notification fired and how its delivery went;
  ``GET|POST /_sandbox/webhook-settings``: ``url``, ``secrets``, ``delay``,
  ``api_client_id`` (false: notifications name no writer), ``attempts``, ``backoff``,
  ``drop_rate`` (the share dropped: recorded, never sent) and ``seed`` (of those draws;
  setting it restarts them); ``GET /_sandbox/dropped-webhooks``: the dropped ones
  (``notificationId``, ``tenant``, ``service``, ``path``, ``event``,
  ``lastModifiedDateTime`` of the change, ``fired_at``);
* ``POST /_sandbox/events``: ``{"path", "tenant", "service"?, "change"?
  (changed|created|deleted), "changes"?, "apiClientId"?, "delay"?}``: something happens
  in the ERP (``changes`` applied as a write) and its webhook fires, in either publisher's
  format depending on the service;
* ``POST /_sandbox/changes`` (:mod:`.changes`): ``{"tenant", "service"?, "entity"?,
  "count"?, "new"?, "paths"?, "changes"?, "delay"?}``: an ERP user changes ``count`` of the
  entity's resources (least recently changed first; new ones are created for any it
  lacks, and ``new`` more), or the ``paths`` (created when not stored); each gets new
  content (``changes``, or a note), a later ``lastModifiedDateTime`` and its webhook
  without ``ApiClientId``, dropped at the drop share. Answers ``{"tenant", "service",
  "changed", "created", "dropped", "changes": [{"path", "change", "lastModifiedDateTime",
  "notificationId", "dropped"}]}``;
* ``POST /_sandbox/delete``: ``{"path", "service"?, "notify"?, "tenant"?, "apiClientId"?}``;
* ``GET|POST /_sandbox/faults``: the settings above (``rate_limit`` is the budget's calls
  per window); a body with ``path`` adds one rule, ``rules`` replaces them all;
* ``GET|POST /_sandbox/budget``: ``{"calls_per_window"?, "window_seconds"?}``; the view
  adds ``policy`` and ``windows``, per (tenant, client): ``calls``, ``served``,
  ``refused`` (429s), ``resets``, ``remaining``, ``reset_in``;
* ``POST /_sandbox/resources``: ``{path: document}`` adds or replaces Financials
  documents, ``{"service": name, "documents": {...}}`` another service's (no webhook);
* ``POST /_sandbox/revoke-tokens`` (optionally ``{"tenant": ...}``);
* ``POST /_sandbox/reset``: fault settings back to their start values; logs, rules,
  rate windows, documents and webhooks reset (issued tokens stay valid; webhook
  settings stay);
* ``GET /_sandbox/health``.

The same operations are methods and properties of :class:`VismaSandbox`.

Modules: :mod:`.server` (the ports and each request's path), :mod:`.httpserver`,
:mod:`.services` (what each service serves and fires), :mod:`.api` (the ERP API calls),
:mod:`.lists` (the list endpoints), :mod:`.changes` (an ERP user's changes),
:mod:`.tokens`, :mod:`.faults`, :mod:`.budget` (the rate limit), :mod:`.fixtures` (documents),
:mod:`.webhooks` (the dispatcher), :mod:`.operations` (the Python control API) and
:mod:`.control` (the control API over HTTP).
"""

from visma_webhooks_local.sandbox.faults import Rule
from visma_webhooks_local.sandbox.server import VismaSandbox
from visma_webhooks_local.sandbox.webhooks import WebhookConfig

__all__ = ["Rule", "VismaSandbox", "WebhookConfig"]
