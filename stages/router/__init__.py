"""The router stage: alert changes into aggregation groups and their flushes (Alertmanager's dispatcher).

- ``core``: the decisions (pure): route matching, group_wait, group_interval ticks, flushes.
- ``config``: the compiled route tables; ``groups``, ``state``: a group's state values.
- ``views``: what the API reads (the groups of an organisation).

Runs on the stage runtime (``pipeline.foundation.runtime``). May import ``contracts`` and
``pipeline.foundation``; never another stage nor ``pipeline.application``.
"""
