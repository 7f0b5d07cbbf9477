"""Identifier formats, checked the same way everywhere they enter."""

import re

# Users come from verified tokens and producers' audiences; devices from clients.
USER_ID_RE = re.compile(r"[A-Za-z0-9_.@:-]{1,128}")
DEVICE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
EPOCH_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Canonical decimal only (no sign, no leading zeros, ASCII digits) so str(parse(t)) == t; 19 digits
# covers int64 and keeps hostile input from reaching int() with huge strings.
POSITION_RE = re.compile(r"([A-Za-z0-9_-]{1,64}):(0|[1-9][0-9]{0,18})")
# The shared broadcast log is a UserSession actor under an id no user can have ("~" is outside
# USER_ID_RE): events without an audience are recorded there once, not once per user.
BROADCAST_LOG = "~broadcast"


def valid_user(user: object) -> bool:
    return isinstance(user, str) and USER_ID_RE.fullmatch(user) is not None


def valid_device(device: object) -> bool:
    return isinstance(device, str) and DEVICE_RE.fullmatch(device) is not None
