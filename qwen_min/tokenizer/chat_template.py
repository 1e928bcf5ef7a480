"""The Qwen2.5 chat template (ChatML with tools), ported from the official Jinja template to Python.

    render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    # '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n'
    # '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'

The official template is the "chat_template" of data/qwen2.5/tokenizer_config.json (the GGUF
checkpoint carries the same 2,507 characters). The tests render it with jinja2 on many
conversations and require this port to agree character for character.

Design choices (each mirrors what Jinja does with the template, quirks included)
- The system turn comes first: messages[0] if it is a system message, else the default prompt.
  With tools, the tool signatures are appended to that system turn, one JSON object per line.
- A system message later in the conversation is rendered as an ordinary turn.
- An assistant message with `tool_calls` renders each call as `<tool_call>` JSON; a call may be
  wrapped in {"type": "function", "function": {...}} (OpenAI style) or given bare.
  `arguments` goes through `tojson`: a dict becomes a JSON object, a string becomes a JSON string.
- Consecutive "tool" messages share one user turn, each wrapped in <tool_response>.
- Messages with another role (or none) render nothing, as in the template.
- Where Jinja would fail (empty conversation, content that is None or not a string inside a
  `+` concatenation, missing arguments) we raise one ValueError naming the message.
- Jinja prints `{{ x }}` as str(x): a missing field prints '', None prints 'None'.
- `tojson`: Jinja's built-in filter is json.dumps(sort_keys=True) with <, >, &, ' escaped as \\u003c...
  (jinja2.utils.htmlsafe_json_dumps) and non-ASCII as \\uXXXX. transformers' apply_chat_template
  replaces that filter with json.dumps(ensure_ascii=False): no sorting, no escaping. Both are offered;
  "transformers" is the default, because apply_chat_template's text is what serving stacks and training
  libraries give the model (so SFT labels built from it match what the model sees in use); "jinja" gives
  what the template renders under plain jinja2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
TOOLS_HEADER = ("\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_FOOTER = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
                "\"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n")

_MISSING = object()  # Jinja's Undefined: a field that is not there


def jinja_tojson(value) -> str:
    """jinja2's `tojson` filter: sorted keys, ASCII only, HTML-sensitive characters escaped.

    >>> jinja_tojson({"b": "<ü>", "a": 1})
    '{"a": 1, "b": "\\\\u003c\\\\u00fc\\\\u003e"}'
    """
    text = _dumps(value, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("'", "\\u0027")


def transformers_tojson(value) -> str:
    """The `tojson` transformers installs for chat templates: json.dumps(ensure_ascii=False), keys in order."""
    return _dumps(value, ensure_ascii=False)


TOJSON = {"jinja": jinja_tojson, "transformers": transformers_tojson}


def _dumps(value, **kwargs) -> str:
    try:
        return json.dumps(value, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"chat template: cannot write {type(value).__name__} as JSON ({e})") from None


def _field(obj, name):
    """Jinja's `obj.name` on a message: the mapping's item, else the attribute, else _MISSING."""
    if isinstance(obj, Mapping):
        return obj.get(name, _MISSING)
    return getattr(obj, name, _MISSING)


def _text(value) -> str:
    """Jinja's `{{ value }}`: '' for a missing field, str() of anything else."""
    return "" if value is _MISSING else str(value)


def _concat_part(value, where: str) -> str:
    """A value joined with `+` in the template: Jinja fails unless it is a string."""
    if not isinstance(value, str):
        shown = "missing" if value is _MISSING else f"a {type(value).__name__}"
        raise ValueError(f"chat template: {where} content must be a string, it is {shown}")
    return value


def render(messages: list, tools: list | None = None, add_generation_prompt: bool = False,
           tojson: str = "transformers") -> str:
    """Render a conversation with the official Qwen2.5 template (see the module docstring)."""
    if tojson not in TOJSON:
        raise ValueError(f"tojson must be one of {sorted(TOJSON)}, not {tojson!r}")
    dump = TOJSON[tojson]
    if not messages:
        raise ValueError("chat template: the conversation has no messages")
    first = messages[0]
    first_is_system = _field(first, "role") == "system"
    out = []
    if tools:
        out.append("<|im_start|>system\n")
        out.append(_text(_field(first, "content")) if first_is_system else DEFAULT_SYSTEM_PROMPT)
        out.append(TOOLS_HEADER)
        for tool in tools:
            out.append("\n" + dump(tool))
        out.append(TOOLS_FOOTER)
    elif first_is_system:
        out.append("<|im_start|>system\n" + _concat_part(_field(first, "content"), "message 0 (system)") + "<|im_end|>\n")
    else:
        out.append(f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n")

    for index, message in enumerate(messages):
        role, content, tool_calls = (_field(message, k) for k in ("role", "content", "tool_calls"))
        has_calls = tool_calls is not _MISSING and bool(tool_calls)
        where = f"message {index} ({role if isinstance(role, str) else 'no role'})"
        if role == "user" or (role == "system" and index > 0) or (role == "assistant" and not has_calls):
            out.append("<|im_start|>" + role + "\n" + _concat_part(content, where) + "<|im_end|>\n")
        elif role == "assistant":
            out.append("<|im_start|>assistant")
            if content is not _MISSING and content:
                out.append("\n" + _concat_part(content, where))
            for call in tool_calls:
                function = _field(call, "function")
                if function is not _MISSING:
                    call = function
                arguments = _field(call, "arguments")
                if arguments is _MISSING:
                    raise ValueError(f"chat template: a tool call of {where} has no arguments")
                out.append('\n<tool_call>\n{"name": "' + _text(_field(call, "name")) + '", "arguments": '
                           + dump(arguments) + "}\n</tool_call>")
            out.append("<|im_end|>\n")
        elif role == "tool":
            if index == 0 or _field(messages[index - 1], "role") != "tool":
                out.append("<|im_start|>user")
            out.append("\n<tool_response>\n" + _text(content) + "\n</tool_response>")
            if index == len(messages) - 1 or _field(messages[index + 1], "role") != "tool":
                out.append("<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)
