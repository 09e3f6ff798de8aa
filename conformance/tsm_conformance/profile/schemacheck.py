"""The profile format's JSON Schema and how its complaints are worded.

Owns ``SCHEMA_VERSION``, the packaged ``profile.schema.json`` (read through
``importlib.resources`` from this package, so it loads from a checkout and an installed wheel
alike) and the translation of ``jsonschema`` errors into one ``ProfileError`` at the key's mark,
naming the bad value and what is allowed; ``check_schema`` checks one file's data on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema

from ..suggest import did_you_mean
from .errors import Marks, ProfileError, error_at, join, show

SCHEMA_VERSION = "tsm-profile/1"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The profile JSON Schema shipped next to this module."""
    text = resources.files(__package__).joinpath("profile.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "an empty value"}


def _type_word(v: object) -> str:
    for name, test in (("boolean", lambda x: isinstance(x, bool)),
                       ("integer", lambda x: isinstance(x, int)), ("null", lambda x: x is None),
                       ("string", lambda x: isinstance(x, str)),
                       ("object", lambda x: isinstance(x, dict)),
                       ("array", lambda x: isinstance(x, list)),
                       ("number", lambda x: isinstance(x, float))):
        if test(v):
            return _TYPE_WORDS[name]
    return type(v).__name__


def _branch_words(sub: Mapping[str, Any]) -> str:
    if "title" in sub:
        return str(sub["title"])
    if "const" in sub:
        return repr(sub["const"])
    t = sub.get("type", "a value")
    types: list[str] = t if isinstance(t, list) else [t]  # the schema's type names
    return " or ".join(_TYPE_WORDS.get(x, x) for x in types)


def _descend(err: jsonschema.ValidationError) -> tuple[jsonschema.ValidationError, list[str]]:
    """Step into oneOf/anyOf to the branch whose type fits, keeping the other branches' names
    (they are alternatives only for that same value, not for a value nested inside it)."""
    others: list[str] = []
    while err.validator in ("oneOf", "anyOf") and err.context:
        branches = err.validator_value
        mismatched = {c.relative_schema_path[0] for c in err.context
                      if c.validator == "type" and not c.relative_path}
        fitting = [i for i in range(len(branches)) if i not in mismatched]
        if not fitting:
            break
        i = fitting[0]
        sub = [c for c in err.context if c.relative_schema_path[0] == i]
        best = jsonschema.exceptions.best_match(sub) or sub[0]
        if best.relative_path:  # the problem is inside the value: other branches do not apply
            others = []
        else:
            others += [_branch_words(b) for j, b in enumerate(branches) if j != i]
        err = best
    return err, others


def _schema_message(err: jsonschema.ValidationError, marks: Marks) -> ProfileError:
    err, others = _descend(err)
    kp = ".".join(str(p) for p in err.absolute_path)
    v, inst, sch, val = err.validator, err.instance, err.schema, err.validator_value
    # The schema's description explains scalar formats ("0444", "6.10"); skip it for containers.
    scalar = isinstance(sch, dict) and sch.get("type") not in ("object", "array")
    hint = f" ({sch['description']})" if scalar and "description" in sch else ""
    alt = "".join(f", or {o}" for o in others)
    if v == "additionalProperties" and isinstance(inst, dict):
        props = list(sch.get("properties", {}))
        pats = list(sch.get("patternProperties", {}))
        extra = [k for k in inst if k not in props and not any(re.search(p, k) for p in pats)]
        key = extra[0] if extra else "?"
        if props:
            msg = (f"unknown key '{key}'{did_you_mean(key, props) or ';'} allowed keys: "
                   f"{', '.join(props)}")
        else:
            msg = f"key '{key}' is not allowed: names must match {' or '.join(pats)}"
        return error_at(marks, join(kp, key), msg)
    if v == "required" and isinstance(inst, dict):
        missing = [r for r in val if r not in inst]
        return error_at(marks, kp, f"missing required key '{missing[0]}' (required: "
                                   f"{', '.join(val)})")
    if v == "const":
        msg = f"{show(inst)} is not allowed; expected {val!r}{alt}"
    elif v == "enum":
        allowed = ", ".join(repr(x) for x in val)
        msg = (f"{show(inst)} is not allowed; expected one of {allowed}{alt}"
               f"{did_you_mean(inst, val)}")
    elif v == "type":
        types: list[str] = val if isinstance(val, list) else [val]  # the schema's type names
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        msg = f"expected {want}{alt}, got {show(inst)} ({_type_word(inst)}){hint}"
    elif v in ("oneOf", "anyOf"):  # every branch failed on type
        words = " or ".join(_branch_words(b) for b in val)
        msg = f"expected {words}, got {show(inst)} ({_type_word(inst)})"
    elif v == "pattern":
        msg = f"{show(inst)} does not match {val}{hint}"
    elif v == "minimum":
        msg = f"{show(inst)} is below the minimum {val}"
    elif v == "maximum":
        msg = f"{show(inst)} is above the maximum {val}"
    elif v == "minItems":
        msg = f"needs at least {val} item(s)"
    elif v == "uniqueItems":
        msg = f"list has duplicate items: {show(inst)}"
    elif v == "minLength":
        msg = "must not be empty"
    else:
        msg = err.message
    return error_at(marks, kp, msg)


def check_schema(data: dict[str, Any], marks: Marks) -> None:
    check_against(data, marks, _validator(), SCHEMA_VERSION)


@lru_cache(maxsize=4)
def validator_for(filename: str) -> jsonschema.Draft202012Validator:
    """A validator for another schema shipped in this package (baseline.schema.json)."""
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


def check_against(data: dict[str, Any], marks: Marks, validator: jsonschema.Draft202012Validator,
                  version: str) -> None:
    """One ``ProfileError`` at the first complaint's mark (profiles, baselines)."""
    # A different format version makes every other complaint noise: say that first.
    if "schema" in data and data["schema"] != version:
        raise error_at(marks, "schema", f"unsupported schema {show(data['schema'])}; this "
                                        f"loader reads '{version}'")
    errors = [_schema_message(e, marks) for e in validator.iter_errors(data)]
    if errors:  # report the one the user meets first reading top to bottom
        raise min(errors, key=lambda e: (e.line or 0, e.col or 0))
