"""Settings models for process entry points: a bad value stops the process with one clear line
per bad variable, never a traceback (shared by the gateway and the sessions host)."""

from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_or_exit(model: type[M], what: str) -> M:
    try:
        return model()
    except ValidationError as e:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise SystemExit(f"invalid {what} settings:\n" + "\n".join(lines)) from None
