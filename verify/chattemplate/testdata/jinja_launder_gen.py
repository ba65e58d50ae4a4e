#!/usr/bin/env python3
"""Generates templates that pass an unsafe or safe name through 0-3 laundering
steps (containers, filters, methods, variables, macros, namespaces, list and
dict mutation, recursive loops) into a name position, for jinja_oracle.py.
Usage: jinja_launder_gen.py SEED COUNT > in.json"""
import json, random, sys
random.seed(int(sys.argv[1])); N=int(sys.argv[2])
C=random.choice; R=random.random
sources=["'a'","'content'","'role'","1","0","(messages|length) - 1","'a'","'content'","'k'","'_x'","'gi_frame'","'mro'","'_'~'x'","messages[0].content","names[0]","names[1]","d|first","tools[0].function.name",
         "'_x'|string","('x_'|reverse)","'\\x5fx'","s[3:12]","'%cx'|format(95)","'{0}x'.format('_')","['_','x']|join"]
expr_l=[
 "[{E}][0]","[{E}]|first","[{E}]|last","[{E}]|min","[{E}]|max","[{E}]|random","({E},)[0]","{{'k': {E}}}.k","{{'k': {E}}}['k']",
 "{{'k': {E}}}.get('k')","{{'k': 1}}.get('z', {E})","{{{E}: 1}}|first","({{{E}: 1}}.keys()|list)[0]","({{'k': {E}}}.values()|list)[0]",
 "({{'k': {E}}}.items()|list)[0][1]","({{'k': {E}}}|dictsort)[0][1]","([[{E}]]|sum(start=[]))[0]","([{E}]|list)[0]",
 "([{E}]|sort)[0]","([{E}]|unique|list)[0]","([{E}]|reverse|list)[0]","([{E}]|select|list)[0]","([{E}]|batch(1)|list)[0][0]",
 "([{E}]|slice(1)|list)[0][0]","{E} if true else 'a'","false or {E}","{E}|default('a')","nothere|default({E})","namespace(k={E}).k",
 "cycler({E}).current","cycler({E}).next()","([{E}]|map('string')|list)[0]","([{{'a': {E}}}]|map(attribute='a')|list)[0]",
 "([{{'a': {E}}}]|groupby('a')|list)[0][0]","[{E}, 'a'][0:1][0]","([{E}] + ['a'])[0]","([{E}] * 2)[1]","({E})",
 "({{'a': {E}}}|items|list)[0][1]","(dict(k={E})|list)[0]","(dict(k={E}).values()|list)[0]","({{'k': [{E}]}}.k|first)",
 "{E}|e","{E}|safe","{E}|trim","([{E}]|join)","({E})[0:]","({E})[:]","[{E}][-1]","({E},)|first","[[{E}]][0][0]",
]
def launder(E, depth):
    for _ in range(depth):
        E = C(expr_l).format(E=E)
    return E
stmts=[
 ("{{% set v = {E} %}}","v"),("{{% set v, w = {E}, 'a' %}}","v"),("{{% set w, v = ['a', {E}] %}}","v"),
 ("{{% set ns = namespace(k='a') %}}{{% set ns.k = {E} %}}","ns.k"),("{{% set ns = namespace(k={E}) %}}","ns.k"),
 ("{{% set ns = namespace({{'k': {E}}}) %}}","ns.k"),("{{% set l = [] %}}{{{{ l.append({E}) }}}}","l[0]"),
 ("{{% set l = ['a'] %}}{{{{ l.insert(0, {E}) }}}}","l[0]"),("{{% set l = ['a'] %}}{{{{ l.extend([{E}]) }}}}","l[1]"),
 ("{{% set d2 = {{}} %}}{{{{ d2.update({{'k': {E}}}) }}}}","d2.k"),("{{% set d2 = {{}} %}}{{{{ d2.update(k={E}) }}}}","d2['k']"),
 ("{{% set d2 = {{}} %}}{{{{ d2.setdefault('k', {E}) }}}}","d2.k"),("{{{{ messages[0].update(k={E}) }}}}","messages[0].k"),
 ("{{{{ x.append({E}) }}}}","x[-1]"),("{{% set f = x.append %}}{{{{ f({E}) }}}}","x[-1]"),
]
uses=["{{{{ z[{X}] }}}}","{{{{ z|attr({X}) }}}}","{{{{ x|map(attribute={X})|list }}}}","{{{{ x|selectattr({X})|list }}}}",
      "{{{{ messages[0][{X}] }}}}","{{{{ (x|select)[{X}] }}}}","{{{{ (x|select)|attr({X}) }}}}","{{{{ z[{X}]() }}}}","{{{{ x|map('attr', {X})|list }}}}",
      "{{{{ ('{{0.' ~ {X} ~ '}}').format(z) }}}}"]
def wrap_use(X):
    r=R()
    u=C(uses).format(X=X)
    if r<0.12: return "{{% for v in [{X}] %}}{U}{{% endfor %}}".format(X=X, U=C(uses).format(X='v'))
    if r<0.2: return "{{% for v in [{X}, 'a'] %}}{U}{{% endfor %}}".format(X=X, U=C(uses).format(X='loop.previtem'))
    if r<0.28: return "{{% macro m(p) %}}{U}{{% endmacro %}}{{{{ m({X}) }}}}".format(X=X, U=C(uses).format(X='p'))
    if r<0.32: return "{{% macro m() %}}{{% for p in varargs %}}{U}{{% endfor %}}{{% endmacro %}}{{{{ m({X}) }}}}".format(X=X, U=C(uses).format(X='p'))
    if r<0.36: return "{{% macro m() %}}{{{{ caller({X}) }}}}{{% endmacro %}}{{% call(p) m() %}}{U}{{% endcall %}}".format(X=X, U=C(uses).format(X='p'))
    if r<0.4: return "{{% with p = {X} %}}{U}{{% endwith %}}".format(X=X, U=C(uses).format(X='p'))
    if r<0.44: return "{{% for p in [['a']] recursive %}}{{% if p is string %}}{U}{{% else %}}{{{{ loop([{X}]) }}}}{{% endif %}}{{% endfor %}}".format(X=X, U=C(uses).format(X='p'))
    if r<0.48: return "{{% macro m(p) %}}{U}{{% endmacro %}}{{% set g = m %}}{{{{ g({X}) }}}}".format(X=X, U=C(uses).format(X='p'))
    if r<0.52: return "{{% macro m(p='a') %}}{U}{{% endmacro %}}{{{{ m(p={X}) }}}}".format(X=X, U=C(uses).format(X='p'))
    return u
def prog():
    E=launder(C(sources), random.randint(0,3))
    if R()<0.45:
        st,ref=C(stmts)
        return st.format(E=E)+wrap_use(launder(ref, random.randint(0,1)))
    return wrap_use(E)
json.dump([prog() for _ in range(N)], sys.stdout)
