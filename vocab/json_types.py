"""The two names for values whose shape this project does not own.

``JsonObject``: a JSON object handed through as is (an event's ``data``, written by the producer:
the service never reads inside it beyond the audience keys). Its values are ``object``, so any
code that does read one must narrow it first: mypy checks that, where ``Any`` would not.

``WireMap``: a decoded msgpack/JSON map that is not trusted yet (an actor payload, a stored state
value, a request body). Read it only through the checks in vocab/wire_checks.py, which narrow
each field or raise ValueError.
"""

from collections.abc import Mapping
from typing import TypeAlias

JsonObject: TypeAlias = dict[str, object]
WireMap: TypeAlias = Mapping[str, object]
