#!/usr/bin/env python3
"""Dynamic soundness oracle for CheckJinja (dev tool, not run by go test).

Reads a JSON list of templates on stdin, renders each (0.5 s limit) in a jinja2
sandbox that allows everything but logs every attribute jinja2 looks up, with
render data whose strings are unsafe names, and writes for each the unsafe
names it looked up. A template CheckJinja passes must look up none:

    python3 testdata/jinja_launder_gen.py 1 20000 > in.json
    python3 testdata/jinja_oracle.py < in.json > unsafe.json
    JINJA_VERDICT_IN=in.json JINJA_VERDICT_OUT=verdict.json go test -run TestJinjaVerdictFiles .
"""
import json, sys, signal
from jinja2.sandbox import SandboxedEnvironment
from jinja2.ext import Extension
from jinja2 import nodes

INTERNALS = set('''gi_code gi_frame gi_running gi_suspended gi_yieldfrom cr_await cr_code cr_frame cr_origin cr_running cr_suspended
ag_await ag_code ag_frame ag_running ag_suspended f_back f_builtins f_code f_generator f_globals f_lasti f_lineno f_locals f_trace
f_trace_lines f_trace_opcodes tb_frame tb_lasti tb_lineno tb_next co_argcount co_cellvars co_code co_consts co_exceptiontable
co_filename co_firstlineno co_flags co_freevars co_kwonlyargcount co_lines co_linetable co_lnotab co_name co_names co_nlocals
co_positions co_posonlyargcount co_qualname co_stacksize co_varnames func_closure func_code func_defaults func_dict func_doc
func_globals func_name im_class im_func im_self mro'''.split())

def unsafe(n):
    return isinstance(n, str) and (n.startswith('_') or n in INTERNALS)

class Gen(Extension):
    tags = {"generation"}
    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_gs"), [], [], body).set_lineno(lineno)
    def _gs(self, caller):
        return caller()

LOG = []
class Env(SandboxedEnvironment):
    def is_safe_attribute(self, obj, attr, value):
        LOG.append(attr)
        return True
    def is_safe_callable(self, obj):
        return True

env = Env(trim_blocks=True, lstrip_blocks=True, extensions=[Gen, "jinja2.ext.loopcontrols"])

def ctx():
    return dict(
        messages=[{'role': 'user', 'content': '__class__'}, {'role': 'assistant', 'content': 'mro', 'tool_calls': [{'function': {'name': '_x', 'arguments': {'__init__': 1, 'city': 'x'}}}]}],
        tools=[{'type': 'function', 'function': {'name': '__init__', 'parameters': {'properties': {'__globals__': {'type': 'string'}, 'gi_frame': {}}}}}],
        z={'a': 1}, d={'__class__': 1, 'k': 'v', 'gi_frame': 2}, x=['a', 'b'], s='{0.__class__}', bos_token='<s>',
        add_generation_prompt=True, names=['__class__', 'f_globals'])

class Timeout(Exception): pass
def alarm(*a): raise Timeout()
signal.signal(signal.SIGALRM, alarm)

out = []
for src in json.load(sys.stdin):
    del LOG[:]
    bad = []
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        t = env.from_string(src)
        t.render(**ctx())
    except Exception:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    bad = sorted(set(n for n in LOG if unsafe(n)))
    out.append(bad)
json.dump(out, sys.stdout)
