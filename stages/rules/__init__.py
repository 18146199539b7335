"""The rules stage: events and pushed alerts into alert changes, with Alertmanager's semantics.

- ``core``: the decisions (pure): fire, resolve, ``for``/``keep_firing_for`` timers, pushes,
  rule changes applied in input order.
- ``alerts``: a pushed alert's validation and merge; ``state``: the state values it keeps.
- ``defs``, ``textfmt``, ``effective``, ``rules``: rules as data (templates, rules, scopes, the
  built-in device templates, the file form) and their resolution for one resource.
- ``views``: what the API reads (firing alerts, history subjects, applied rule changes).

Runs on the stage runtime (``pipeline.foundation.runtime``). May import ``contracts`` and
``pipeline.foundation``; never another stage nor ``pipeline.application``.
"""
