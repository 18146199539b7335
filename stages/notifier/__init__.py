"""The notifier stage: delivers send requests to the integrations (hop C).

Where things are:

- ``core``: the decisions (pure): admit, gate, claim, sent / retry after a delay / give up,
  the fallback hand-off. ``records``: the ledger's record types. ``breaker`` (circuit
  breaker, rate limit, retry budget) and ``classify`` (an attempt's outcome and verdict):
  pure as well.
- ``worker``: executes the decisions on the runtime's work-queue consumer; ``ledger``: the
  ledger and attempt log on JetStream; ``service``: the stage as a process's service.
- ``delivery``: one attempt and the built-in senders (webhook, Slack, PagerDuty, email);
  ``http``: ``http_config`` over the foundation's HTTP/1.1 client; ``integrations/``: every
  other kind; ``senders``: one sender per configured integration.
- ``payloads`` and ``templates``: the request bodies and Alertmanager's templates (pure).

May import ``contracts``, ``pipeline.foundation`` and third-party libraries; never another
stage nor ``pipeline.application``.
"""
