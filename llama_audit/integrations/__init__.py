"""Steps that run llama-audit inside other data-processing frameworks.

Each integration is a submodule importing its framework lazily (an optional extra): importing
this package imports none of them. ``llama_audit.integrations.datatrove``: datatrove pipeline
steps (extra ``datatrove``); see docs/scaling.md, "Hand-off to datatrove"."""
