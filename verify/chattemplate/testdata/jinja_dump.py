#!/usr/bin/env python3
"""Differential oracle for the Go Jinja parser (dev tool, not run by go test).

Reads a JSON list of template sources on stdin and writes a JSON list with,
for each, the jinja2 syntax tree in the dump format of dump_test.go, or
"ERROR" when jinja2 (with transformers' environment: trim_blocks,
lstrip_blocks, loopcontrols and the {% generation %} tag) refuses it.

    python3 testdata/jinja_dump.py < in.json > want.json
"""
import json
import sys

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension


class AssistantTracker(Extension):  # as transformers defines it
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)


env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True,
                         extensions=[AssistantTracker, "jinja2.ext.loopcontrols"])


def dump(v):
    if isinstance(v, nodes.CallBlock) and isinstance(v.call.node, nodes.ExtensionAttribute):
        return "Generation(" + dump(v.body) + ")"
    if isinstance(v, nodes.Node):
        return type(v).__name__ + "(" + ",".join(dump(getattr(v, f)) for f in v.fields) + ")"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(dump(x) for x in v) + "]"
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    raise TypeError(type(v))


out = []
for src in json.load(sys.stdin):
    try:
        out.append(dump(env.parse(src)))
    except Exception:  # TemplateSyntaxError, and RecursionError on deep nesting
        out.append("ERROR")
json.dump(out, sys.stdout)
