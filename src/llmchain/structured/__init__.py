"""Structured output: find JSON in a model's text (``_json_extract``), repair it locally
(``_json_fix``), compile a schema from a type or a JSON schema (``_schema``), stream partial
objects (``_partial_json``), check tool calls (``_tool_check``) and the glue the parse, validate
and repair stages and ``Chain.complete(output=...)`` share (``_output``).

Nothing is re-exported: the stages import the private modules they need, and users reach
structured output through ``Chain.complete(output=...)`` and the stages' options.

Part of the core layer, not a stage: pure functions over the core's data that the chain itself
needs, importing nothing but the core (docs/architecture.md, "Where things go").
"""
