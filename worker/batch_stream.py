"""Read a batch body from a byte stream, bounded while reading.

A batch may hold at most ``max_items`` items; a body of 12 MiB of ``"a\\n"`` (six million
one-letter prompts) or a JSON array of six million tiny items must not be split and
materialised before that is found out. Both readers stop at item ``max_items + 1``
and never hold more than one item's text beyond what they keep:

* :func:`read_jsonl_stream`: one line at a time (``readline`` with a length bound), each
  line turned into an entry exactly like :func:`worker.batch_items.read_jsonl` does;
* :func:`read_json_stream`: a JSON array of items, or an object whose ``items`` is one,
  decoded item by item with ``json``'s own decoder (:meth:`json.JSONDecoder.raw_decode`)
  over a buffer that is refilled on demand and emptied as items are taken.

Problems are :class:`~worker.api.SpecError`: ``body`` (malformed, not UTF-8, nested too
deep: a 400) or ``items`` / ``lines[n]`` (too many items, an item too large: a 422).
"""
from __future__ import annotations

import codecs
import json
from typing import IO, Any

from worker.batch_items import add_line
from worker.errors import SpecError

CHUNK_BYTES = 64 * 1024
WHITESPACE = " \t\n\r"


def too_many(path: str, max_items: int) -> SpecError:
    return SpecError([{"path": path, "message": f"at most {max_items} items per request "
                       "(send more in further requests with the same name)"}])


def read_jsonl_stream(stream: IO[bytes], *, max_items: int, max_line_bytes: int,
                      ) -> tuple[list[tuple[int, Any]], list[dict[str, Any]]]:
    """``(line number, value)`` pairs and line errors, as ``read_jsonl`` gives for text."""
    entries: list[tuple[int, Any]] = []
    errors: list[dict[str, Any]] = []
    number = 0
    while line := stream.readline(max_line_bytes + 1):
        number += 1
        if len(line) > max_line_bytes:
            raise SpecError([{"path": f"lines[{number}]", "line": number,
                              "message": f"line longer than {max_line_bytes} bytes"}])
        try:
            raw = line.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise SpecError([{"path": "body", "message": f"not UTF-8 (line {number}): {exc}"}]
                            ) from None
        if not raw:
            continue
        if len(entries) + len(errors) >= max_items:
            raise too_many("lines", max_items)
        add_line(number, raw, entries, errors)
    return entries, errors


class _Text:
    """UTF-8 text decoded from ``stream`` on demand; ``pos`` is the parse position."""

    def __init__(self, stream: IO[bytes], max_value_chars: int) -> None:
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.json = json.JSONDecoder(parse_constant=_no_constant)
        self.max_value_chars = max_value_chars
        self.buf = ""
        self.pos = 0
        self.eof = False

    def _fill(self, want_chars: int) -> None:
        """Drop what was parsed, then read until ``want_chars`` are pending (or the end)."""
        parts, have = [self.buf[self.pos:]], len(self.buf) - self.pos
        while not self.eof and have < want_chars:
            data = self.stream.read(CHUNK_BYTES)
            try:
                parts.append(self.decoder.decode(data or b"", final=not data))
            except UnicodeDecodeError as exc:
                raise SpecError([{"path": "body", "message": f"not UTF-8: {exc}"}]) from None
            have += len(parts[-1])
            self.eof = not data
        self.buf, self.pos = "".join(parts), 0

    def peek(self) -> str:
        """The next non-blank character ("" at the end), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos:self.pos + 1]
            self._fill(1)

    def take(self, expected: str) -> None:
        if self.peek() != expected:
            found = self.peek() or "the end of the body"
            raise malformed(f"expected {expected!r}, found {found!r}")
        self.pos += 1

    def value(self, path: str) -> Any:
        """One JSON value, reading more while it is incomplete (doubling, so a large
        value costs O(n log n)); a value above ``max_value_chars`` is refused."""
        self.peek()
        while True:
            try:
                value, end = self.json.raw_decode(self.buf, self.pos)
            except RecursionError:
                raise malformed("nested too deeply") from None
            except json.JSONDecodeError as exc:
                if self.eof or _definite(exc, len(self.buf)):
                    raise malformed(str(exc)) from None
                value, end = None, None
            except ValueError as exc:  # NaN / Infinity
                raise malformed(str(exc)) from None
            # A number or literal that ends with the buffer may continue in the next chunk.
            if end is not None and (end < len(self.buf) or self.eof):
                self.pos = end
                return value
            pending = len(self.buf) - self.pos
            if pending > self.max_value_chars:
                raise SpecError([{"path": path, "message": "larger than "
                                  f"{self.max_value_chars} characters"}])
            self._fill(max(2 * pending, CHUNK_BYTES))

    def array(self, path: str, max_items: int) -> list[Any]:
        self.take("[")
        items: list[Any] = []
        if self.peek() == "]":
            self.pos += 1
            return items
        while True:
            if len(items) >= max_items:
                raise too_many(path, max_items)
            items.append(self.value(f"{path}[{len(items)}]"))
            if self.peek() == ",":
                self.pos += 1
                continue
            self.take("]")
            return items

    def end(self) -> None:
        if self.peek() != "":
            raise malformed("extra data after the JSON value")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _definite(exc: json.JSONDecodeError, buffered: int) -> bool:
    """Is the error inside what is buffered (more text cannot fix it)? An unterminated
    string is reported at its start, so it always waits for more text."""
    return exc.pos < buffered - 8 and not exc.msg.startswith("Unterminated string")


def malformed(detail: str) -> SpecError:
    return SpecError([{"path": "body", "message": f"malformed JSON: {detail}"}])


def read_json_stream(stream: IO[bytes], *, max_items: int, max_value_chars: int) -> Any:
    """The body's JSON, with a top-level array (or an object's ``items`` array) read item
    by item and refused past ``max_items``; other values are decoded whole (bounded by
    ``max_value_chars``)."""
    text = _Text(stream, max_value_chars)
    first = text.peek()
    if first == "[":
        result: Any = text.array("items", max_items)
    elif first == "{":
        text.take("{")
        result = {}
        while text.peek() != "}":
            if result:
                text.take(",")
            if text.peek() != '"':
                raise malformed("expected a property name in double quotes")
            key = text.value("body")
            text.take(":")
            result[key] = (text.array("items", max_items)
                           if key == "items" and text.peek() == "[" else text.value(key))
        text.take("}")
    elif first == "":
        result = None
    else:
        result = text.value("body")
    text.end()
    return result
