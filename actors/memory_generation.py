"""When a new daprd takes over this app (it fetches /dapr/config at start), the actors this app
still holds in memory may have been placed elsewhere and changed there meanwhile (a killed and
restarted daprd, app still running): every in-memory copy of actor state is stale. Actors keep
the generation they loaded under and reload from the store when it moved on."""

_generation = 0


def current() -> int:
    return _generation


def new_daprd() -> None:
    global _generation
    _generation += 1
