"""The filter stage: group flushes into send requests, after inhibition, silences,
acknowledgements, escalation and dedup (Alertmanager's notification pipeline).

- ``core``: the decisions (pure), built on ``inhibit``, ``silences``, ``acks``,
  ``escalation``, ``nflog`` (Alertmanager's ``needsUpdate``) and ``ticks``; ``state``: its
  state values; ``config``: the compiled options.
- ``views``: what the API reads (alert statuses, silences, acks, escalations).

Runs on the stage runtime (``pipeline.foundation.runtime``). May import ``contracts`` and
``pipeline.foundation``; never another stage nor ``pipeline.application``.
"""
