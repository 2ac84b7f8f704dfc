# Renders chat templates with Python's Jinja2 in the environment of Hugging Face transformers' apply_chat_template:
# the reference the server's renders are compared with. Reads {"now": ISO date, "renders": [{"source",
# "variables"}]} as JSON on stdin and writes a list of {"text"} or {"error"}, one per render, on stdout: one process
# for every render.
import json
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Generation(Extension):
    """transformers' {% generation %} block, which marks the assistant's text and renders it unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


# transformers replaces Jinja2's own tojson, which escapes HTML characters, with plain json.dumps.
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    request = json.load(sys.stdin)
    now = datetime.fromisoformat(request["now"])
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda format: now.strftime(format)
    compiled = {}
    results = []
    for render in request["renders"]:
        try:
            source = render["source"]
            if source not in compiled:
                compiled[source] = env.from_string(source)
            results.append({"text": compiled[source].render(**render["variables"])})
        except Exception as error:
            results.append({"error": f"{type(error).__name__}: {error}"})
    json.dump(results, sys.stdout)


main()
