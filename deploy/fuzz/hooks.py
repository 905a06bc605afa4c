"""Schemathesis hooks of the api's fuzz test (deploy/deploycheck/fuzz_test.go).

edge/openapi.json states every constraint the server enforces that JSON
Schema can state. The few it cannot are in its descriptions (info.description
lists them); before_call makes the schema-valid (positive) cases keep them too,
so that a refusal of a positive case is always a finding:

  * a create's end_time at least 1 ms after its start_time (both truncated to
    the millisecond), both within the years 1-9999 once in UTC;
  * a user id at most 128 bytes of UTF-8 (x-max-bytes: maxLength counts
    characters);
  * no `limit` with Accept: text/csv on GET /campaign/{id}/claims;
  * integers written as integers: JSON Schema's integer takes 58.0, the server
    takes 58 only (amounts and counts are never floats).

state_dependent_refusal is the check of the other half of the rule: a positive
case may be refused only with a status whose response in the document carries
x-state-dependent, and with a body status it lists (the campaign's window, its
inventory, an id that does not exist, the token's rights, a rate).
"""

import re

import schemathesis

MAX_USER_ID_BYTES = 128

TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|([+-])(\d{2}):(\d{2}))$"
)


def _days(y, m, d):
    """Days from 0001-01-01 to y-m-d (proleptic Gregorian), any year >= 0."""
    y2 = y - (m <= 2)
    era_days = y2 * 365 + y2 // 4 - y2 // 100 + y2 // 400
    mdays = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era_days + mdays


def _utc_ms(s):
    """Milliseconds of an RFC 3339 time (truncated), and its UTC year; None if unparsable."""
    m = TIME.match(s) if isinstance(s, str) else None
    if not m:
        return None
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    frac = (m.group(7) or "")[:3].ljust(3, "0")
    off = 0
    if m.group(8) != "Z":
        off = (int(m.group(10)) * 60 + int(m.group(11))) * (1 if m.group(9) == "+" else -1)
    ms = ((_days(y, mo, d) * 24 + h) * 60 + mi - off) * 60_000 + sec * 1000 + int(frac)
    # The UTC year: move by the offset across a year boundary at most.
    year = y
    if ms < _days(y, 1, 1) * 86_400_000:
        year = y - 1
    elif ms >= _days(y + 1, 1, 1) * 86_400_000:
        year = y + 1
    return ms, year


_creates = [0]


def _fix_window(body):
    if not isinstance(body, dict):
        return
    _creates[0] += 1
    if _creates[0] % 3 == 0:
        # Every third create live whatever was drawn, so that opens reach
        # the claim (200, 409, 410) and not only the window's 400.
        body["start_time"], body["end_time"] = "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"
        return
    a, b = _utc_ms(body.get("start_time")), _utc_ms(body.get("end_time"))
    if a is None or b is None:
        return
    if 1 <= a[1] <= 9999 and 1 <= b[1] <= 9999 and b[0] - a[0] >= 1:
        return
    # A live window: the stateful phase then opens packets of it.
    body["start_time"], body["end_time"] = "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"


def _fit_user_id(v):
    if not isinstance(v, str) or len(v.encode("utf-8")) <= MAX_USER_ID_BYTES:
        return v
    b = v.encode("utf-8")[:MAX_USER_ID_BYTES]
    return b.decode("utf-8", errors="ignore")


def _accepts_csv(accept):
    # The server's rule (edge/merchant.go, acceptsCSV).
    for r in str(accept or "").split(","):
        mt, _, params = r.strip().partition(";")
        if mt.strip().lower() != "text/csv":
            continue
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    if float(v) == 0:
                        return False
                except ValueError:
                    pass
        return True
    return False


def _integers(v):
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {k: _integers(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_integers(x) for x in v]
    return v


def _positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if not _positive(case):
        return
    label = case.operation.label
    if isinstance(case.body, (dict, list, float)):
        case.body = _integers(case.body)
    if label == "POST /campaign":
        _fix_window(case.body)
    elif label == "POST /campaign/{id}/open" and isinstance(case.body, dict):
        case.body["user_id"] = _fit_user_id(case.body.get("user_id"))
    elif label == "GET /campaign/{id}/claims/{user_id}" and case.path_parameters:
        case.path_parameters["user_id"] = _fit_user_id(case.path_parameters.get("user_id"))
    elif label == "GET /campaign/{id}/claims":
        if case.query and "after" in case.query:
            case.query["after"] = _fit_user_id(case.query["after"])
        if case.query and "limit" in case.query and _accepts_csv((case.headers or {}).get("Accept")):
            del case.query["limit"]


def _resolve(doc, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = doc
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


@schemathesis.check
def state_dependent_refusal(ctx, response, case):
    """A schema-valid request is refused only for a documented state-dependent reason."""
    if not _positive(case) or not 400 <= response.status_code < 500:
        return None
    doc = case.operation.schema.raw_schema
    declared = _resolve(doc, case.operation.definition.raw.get("responses", {}).get(str(response.status_code)))
    states = (declared or {}).get("x-state-dependent") or []
    try:
        status = response.json().get("status")
    except Exception:
        status = None
    if status in states:
        return None
    raise AssertionError(
        f"a schema-valid request was refused with {response.status_code} {status!r}, "
        f"which the document does not give as state-dependent (x-state-dependent: {states})"
    )
