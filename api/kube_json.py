"""Request bodies for the apiserver, written so that both of its parsers read them.

Server-side apply bodies go as `application/apply-patch+yaml`, and JSON is YAML, except for one thing: Python's
JSON escapes a character beyond U+FFFF (an emoji, a CJK extension) as a surrogate pair (\\ud83d\\ude00), which
is valid JSON but not valid YAML, so the apiserver refused any spec or condition quoting such text. Here those
characters are written as themselves (UTF-8), and the few that YAML does not take raw (DEL, C1 controls, line
separators, surrogates, U+FFFE/U+FFFF) as BMP escapes, which both JSON and YAML read. Structure is ASCII, so
only string contents change.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Characters JSON leaves raw but YAML does not take raw inside a quoted string: those outside its printable set
# (DEL, which the stateful fuzzer found in a system prompt: the apiserver answered 400; C1 controls, surrogates,
# U+FFFE/U+FFFF), and the ones it reads as line breaks and would fold into a space (U+0085,
# U+2028, U+2029).
_NOT_YAML_LITERAL = re.compile("[\u007f-\u009f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def body_bytes(body: Any) -> bytes:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return _NOT_YAML_LITERAL.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8", "surrogatepass")
