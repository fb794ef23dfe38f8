"""How deeply a JSON text nests, read from its bytes without parsing it.

Python's ``json`` (the parser of connexion's body validation and of Starlette's
``request.json()``) recurses once per level and raises ``RecursionError`` near a thousand
levels; jsonschema and every walk of a parsed body recurse too, and orjson refuses to parse
past 1024 levels (``JSONDecodeError: depth limit exceeded``, not configurable) and to
serialise past 255. The request body middleware refuses a body nested deeper than
:data:`MAX_JSON_DEPTH` before any of them sees it.

Cost: a text with no more opening brackets than the limit cannot nest deeper than it, which two
``bytes.count`` calls tell (about 0.5 µs for a 200-byte body). Only a body with more brackets
than that is measured: its strings dropped (a bracket inside a string does not nest), the rest
reduced to its brackets, each in C, then a walk over the brackets alone that stops as soon as
the limit is passed (a few µs for a list of a hundred objects, about 3 ms at worst for 64 KiB
of nothing but brackets).
"""

from __future__ import annotations

MAX_JSON_DEPTH = 64
"""Levels of arrays and objects a JSON body may nest (``[[1]]`` is 2). The services' bodies
nest three at most; Python's parser fails near 1000 and orjson serialises no more than 255."""

_OPEN = ord("[")
_OBJECTS_AS_ARRAYS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nests_deeper_than(text: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays and objects more than ``limit`` levels deep.

    Meant to run before parsing, so ``text`` need not be valid JSON; whatever it answers for
    a broken text, no parser recurses deeper than ``limit`` levels in it when it says no.
    """
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    brackets = outside_strings(text).translate(_OBJECTS_AS_ARRAYS, _NOT_BRACKETS)
    if brackets.count(b"[") <= limit:
        return False
    level = 0
    for byte in brackets:
        if byte == _OPEN:
            level += 1
            if level > limit:
                return True
        else:
            level -= 1
    return False


def outside_strings(text: bytes) -> bytes:
    """``text`` without its JSON strings (``[{"a": "[x]"}]`` -> ``[{: }]``).

    Escapes are dropped first (``\\\\`` then ``\\"``: they only occur inside strings), so
    every quote left opens or closes a string; an unterminated string runs to the end, as a
    parser would read it.
    """
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(text.split(b'"')[::2])
