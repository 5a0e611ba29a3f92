"""``haste web``: the HTTP face of the engine (Starlette on uvicorn).

One module per concern:

* :mod:`~engine.web.app` — the application factory, shared state, request logs;
* :mod:`~engine.web.webhooks` — Standard Webhooks intake into the outbox;
* :mod:`~engine.web.endpoints` — webhook URLs and signing secrets (rotation);
* :mod:`~engine.web.auth` — workspace API keys;
* :mod:`~engine.web.api` — the operator/CRM API over the engine's functions;
* :mod:`~engine.web.manual` — manual triggers (API and ``haste trigger``);
* :mod:`~engine.web.health` — ``/healthz``, ``/readyz``, ``/metrics``;
* :mod:`~engine.web.gauges` — metrics read from PostgreSQL and Redis at scrape time;
* :mod:`~engine.web.openapi` — the OpenAPI document (and the request schemas);
* :mod:`~engine.web.responses` — JSON encoding and problem responses;
* :mod:`~engine.web.server` — running it under uvicorn with a bounded graceful stop;
* :mod:`~engine.web.threads` — blocking work off the event loop, abandonable at shutdown.
"""
