package chattemplate

import (
	"errors"
	"strings"
	"testing"
)

// Hostile templates, one per bypass: each must be refused, not as a syntax
// error, with a reason that names the problem.
var jinjaHostile = []struct{ name, src, reason string }{
	// attribute and item names that start with "_"
	{"dunder attribute", `{{ ''.__class__.__mro__[1].__subclasses__() }}`, `attribute "__class__" starts with "_"`},
	{"private attribute", `{{ self._TemplateReference__context }}`, `attribute "_TemplateReference__context" starts with "_"`},
	{"self init", `{{ self.__init__.__globals__ }}`, `attribute "__init__" starts with "_"`},
	{"cycler globals", `{{ cycler.__init__.__globals__.os.popen('id').read() }}`, `attribute "__init__"`},
	{"joiner", `{{ joiner.__init__ }}`, `attribute "__init__"`},
	{"namespace", `{{ namespace.__init__ }}`, `attribute "__init__"`},
	{"lipsum", `{{ lipsum.__globals__['os'] }}`, `attribute "__globals__"`},
	{"range", `{{ range.__class__ }}`, `attribute "__class__"`},
	{"item literal", `{{ x['__class__'] }}`, `item name "__class__" starts with "_"`},
	{"single underscore item", `{{ x['_private'] }}`, `item name "_private" starts with "_"`},
	{"attribute via dot number", `{{ x.__dict__ }}`, `attribute "__dict__"`},
	{"namespace attribute set", `{% set ns = namespace() %}{% set ns.__class__ = 1 %}`, `attribute "__class__"`},
	{"whitespace before name", "{{ x.\u3000__class__ }}", `attribute "__class__"`},
	{"python whitespace \\x1c", "{{ x.\x1c__class__ }}", `attribute "__class__"`},

	// escapes: names after jinja2 resolves them as Python does
	{"hex escape", `{{ x['\x5f\x5fclass\x5f\x5f'] }}`, `item name "__class__"`},
	{"unicode escape", `{{ x['\u005f\u005fclass\u005f\u005f'] }}`, `item name "__class__"`},
	{"long unicode escape", `{{ x['\U0000005fx'] }}`, `item name "_x"`},
	{"octal escape", `{{ x['\137\137class\137\137'] }}`, `item name "__class__"`},
	{"named escape", `{{ x['\N{LOW LINE}\N{low line}class\N{Low Line}\N{LOW LINE}'] }}`, `item name "__class__"`},
	{"named letters", `{{ x['__\N{LATIN SMALL LETTER C}lass__'] }}`, `item name "__class__"`},
	{"line continuation", "{{ x['_\\\n_class__'] }}", `item name "__class__"`},
	{"adjacent literals", `{{ x['_' "_class__"] }}`, `item name "__class__"`},
	{"escaped attr name", `{{ x|attr('\x5f\x5fclass\x5f\x5f') }}`, `"attr" filter name "__class__"`},

	// names computed by string operations
	{"concatenation", `{{ x['__cla' ~ 'ss__'] }}`, `item name computed by string operations ("~") instead of a literal`},
	{"plus", `{{ x['_' + '_class__'] }}`, `string operations ("+")`},
	{"repetition", `{{ x['_' * 2 + 'class' + '_' * 2] }}`, `string operations`},
	{"percent", `{{ x['%sclass%s' % ('__', '__')] }}`, `string formatting ("%")`},
	{"format filter", `{{ x['%c%cclass%c%c'|format(95, 95, 95, 95)] }}`, `the filter "format"`},
	{"join filter", `{{ x[['__cl', 'ass__']|join] }}`, `the filter "join"`},
	{"join tuple", `{{ x[('_', '_class__')|join('')] }}`, `the filter "join"`},
	{"replace method", `{{ x['..class..'.replace('.', '_')] }}`, `the method "replace"`},
	{"format method", `{{ x['{}{}class{}{}'.format('_', '_', '_', '_')] }}`, `the method "format"`},
	{"join method", `{{ x[''.join(['__cla', 'ss__'])] }}`, `the method "join"`},
	{"reverse filter", `{{ x['__ssalc__'|reverse] }}`, `the filter "reverse"`},
	{"string filter", `{{ x[(()|select|string)[24]] }}`, `computed by`},
	{"lower filter", `{{ x['__CLASS__'|lower] }}`, `the filter "lower"`},
	{"slice of literal", `{{ x['x__class__'[1:]] }}`, `a slice of a string`},
	{"char of literal", `{{ x['_a'[0] ~ '_class__'] }}`, `string operations`},
	{"lipsum", `{{ x[lipsum(1)] }}`, `a call of "lipsum"`},
	{"attr computed", `{{ x|attr('__cla' ~ 'ss__') }}`, `"attr" filter name computed by string operations ("~")`},
	{"attr via map", `{{ x|map('attr', '_' ~ 'x')|list }}`, `"attr" filter name computed`},

	// variables the template sets
	{"set concatenation", `{% set n = '__cl' ~ 'ass__' %}{{ x[n] }}`, `computed by string operations ("~"), through the variable "n", instead of a literal`},
	{"set literal", `{% set n = '_cl' %}{{ x[n] }}`, `item name "_cl" (a literal the template assigns) starts with "_"`},
	{"set chain", `{% set a = '_' %}{% set b = a ~ '_class__' %}{% set c = b %}{{ x[c] }}`, `string operations ("~")`},
	{"set tuple", `{% set a, b = 'y', '_x' %}{{ z[b] }}`, `"_x" (a literal the template assigns)`},
	{"set block", `{% set n %}__class__{% endset %}{{ x[n] }}`, `the output of a {% set %} block`},
	{"set filtered block", `{% set n | trim %} __class__ {% endset %}{{ x[n] }}`, `{% set %} block`},
	{"with", `{% with n = '_x' %}{{ z[n] }}{% endwith %}`, `"_x"`},
	{"namespace kwarg", `{% set ns = namespace(n='_x') %}{{ z[ns.n] }}`, `"_x"`},
	{"namespace dict", `{% set ns = namespace({'n': '_x'}) %}{{ z[ns.n] }}`, `"_x"`},
	{"namespace set", `{% set ns = namespace(n='a') %}{% set ns.n = '_' ~ 'x' %}{{ z[ns.n] }}`, `string operations`},
	{"loop over literal list", `{% for n in ['a', '_x'] %}{{ z[n] }}{% endfor %}`, `"_x"`},
	{"loop over literal dict", `{% for n in {'_x': 1} %}{{ z[n] }}{% endfor %}`, `"_x"`},
	{"dictsort of literal", `{% for k, v in {'_x': 1}|dictsort %}{{ z[k] }}{% endfor %}`, `"_x"`},
	{"items of literal", `{% for k, v in {'a': '_x'}.items() %}{{ z[v] }}{% endfor %}`, `"_x"`},
	{"first of literal", `{{ z[['_x']|first] }}`, `"_x"`},
	{"sum of lists", `{{ z[([['_x']]|sum(start=[]))|first] }}`, `"_x"`},
	{"sum start", `{{ z[([[]]|sum(start=['_x']))|first] }}`, `"_x"`},
	{"item of literal list", `{{ z[['_x'][0]] }}`, `"_x"`},
	{"get of literal dict", `{{ z[{'a': '_x'}.get('a')] }}`, `"_x"`},
	{"conditional", `{{ z['a' if c else '_x'] }}`, `"_x"`},
	{"or", `{{ z[c or '_x'] }}`, `"_x"`},
	{"default", `{{ z[c|default('_x')] }}`, `"_x"`},
	{"macro argument", `{% macro m(n) %}{{ z[n] }}{% endmacro %}{{ m('_x') }}`, `"_x"`},
	{"macro keyword argument", `{% macro m(n) %}{{ z[n] }}{% endmacro %}{{ m(n='_' ~ 'x') }}`, `string operations`},
	{"macro default", `{% macro m(n='_x') %}{{ z[n] }}{% endmacro %}`, `"_x"`},
	{"macro varargs", `{% macro m() %}{% for n in varargs %}{{ z[n] }}{% endfor %}{% endmacro %}{{ m('_x') }}`, `"_x"`},
	{"macro kwargs keys", `{% macro m() %}{% for n in kwargs %}{{ z[n] }}{% endfor %}{% endmacro %}{{ m(_x=1) }}`, `"_x"`},
	{"macro star args", `{% macro m(n) %}{{ z[n] }}{% endmacro %}{{ m(*['_x']) }}`, `"_x"`},
	{"macro as value", `{% macro m(n) %}{{ z[n] }}{% endmacro %}{% set f = m %}{{ f('_x') }}`, `"_x"`},
	{"caller argument", `{% macro m() %}{{ caller('_x') }}{% endmacro %}{% call(n) m() %}{{ z[n] }}{% endcall %}`, `"_x"`},
	{"caller argument shadows loop", `{% macro m() %}{{ caller('_x') }}{% endmacro %}{% for n in messages %}{% call(n) m() %}{{ z[n] }}{% endcall %}{% endfor %}`, `"_x"`},
	{"with shadows loop", `{% for n in messages %}{% with n = '_x' %}{{ z[n] }}{% endwith %}{% endfor %}`, `"_x"`},
	{"set shadows loop", `{% for n in range(3) %}{% set n = '_x' %}{{ z[n] }}{% endfor %}`, `"_x"`},
	{"caller as value", `{% macro m() %}{% set c = caller %}{{ c('_x') }}{% endmacro %}{% call(n) m() %}{{ z[n] }}{% endcall %}`, `"_x"`},
	{"macro in namespace", `{% macro m(p) %}{{ z[p] }}{% endmacro %}{% set ns = namespace(get=m) %}{{ ns.get('_x') }}`, `"_x"`},
	{"caller output", `{% macro m() %}{{ z[caller()] }}{% endmacro %}`, `a call of "caller"`},
	{"macro output", `{% macro m() %}__class__{% endmacro %}{{ z[m()] }}`, `the output of the macro "m"`},
	{"macro name attribute", `{% macro m() %}{% endmacro %}{{ z[m.name] }}`, `an attribute of a macro`},
	{"block output", `{% block b %}__class__{% endblock %}{{ z[self.b()] }}`, `computed by`},
	{"recursive loop call", `{% for n in ['a'] recursive %}{{ z[n] }}{{ loop(['_x']) }}{% endfor %}`, `"_x"`},
	{"loop previtem", `{% for n in ['_x', 'a'] %}{{ z[loop.previtem] }}{% endfor %}`, `"_x"`},
	{"cycler", `{% set c = cycler('_x') %}{{ z[c.current] }}`, `an attribute of a macro or template object`},
	{"cycler next", `{% set c = cycler('_x') %}{{ z[c.next()] }}`, `the method "next"`},
	{"list append", `{% set l = [] %}{{ l.append('_' ~ 'x') }}{% for n in l %}{{ z[n] }}{% endfor %}`, `string operations`},
	{"dict update", `{% set d = {} %}{{ d.update({'k': '_x'}) }}{{ z[d.k] }}`, `"_x"`},
	{"data update", `{{ messages[0].update(k='_x') }}{% for k, v in messages[0]|items %}{{ messages[0][k] }}{{ z[v] }}{% endfor %}`, `(a literal the template assigns)`},

	// names read from render-time data (the sender of a message chooses them)
	{"data name", `{{ z[messages[0].content] }}`, `item name read from render-time data`},
	{"data attr", `{{ z|attr(messages[-1].content) }}`, `"attr" filter name read from render-time data`},
	{"slice of data", `{{ z[messages[0].content[:]] }}`, `read from render-time data`},
	{"slice of data in a variable", `{% set v = names[0][0:] %}{{ z|attr(v) }}`, `read from render-time data`},
	{"data key on another object", `{% for k, v in tools[0]|items %}{{ z[k] }}{% endfor %}`, `is a key of tools[0] (from the loop at line 1) but indexes z`},
	{"data key outside loop", `{% for k, v in d|items %}{% macro m() %}{{ d[k] }}{% endmacro %}{% endfor %}`, `read from render-time data`},
	{"data key reassigned", `{% for k, v in d|dictsort %}{% set d = e %}{{ d[k] }}{% endfor %}`, `the loop reassigns d`},
	{"data key as attr", `{% for k in d.keys() %}{{ d|attr(k) }}{% endfor %}`, `"attr" filter name read from render-time data`},
	{"element of a list", `{% for r in tool.parameters.required %}{{ tool.parameters.required[r] }}{% endfor %}`, `read from render-time data`},
	{"element, unguarded", `{% for k in d|list %}{{ d[k] }}{% endfor %}`, `read from render-time data`},
	{"guard on another path", `{% if e is mapping %}{% for k in d %}{{ d[k] }}{% endfor %}{% endif %}`, `read from render-time data`},
	{"guard reassigned", `{% if d is mapping %}{% set d = names %}{% for k in d %}{{ d[k] }}{% endfor %}{% endif %}`, `read from render-time data`},
	{"guard in else", `{% if d is mapping %}{% else %}{% for k in d %}{{ d[k] }}{% endfor %}{% endif %}`, `read from render-time data`},
	{"guard negated", `{% if not d is mapping %}{% for k in d %}{{ d[k] }}{% endfor %}{% endif %}`, `read from render-time data`},
	{"guard or", `{% if d is mapping or x %}{% for k in d %}{{ d[k] }}{% endfor %}{% endif %}`, `read from render-time data`},
	{"context before set", `{{ z[key] }}{% set key = 'content' %}`, `read from render-time data`},

	// interpreter internals without a leading underscore
	{"generator frame", `{{ (()|select).gi_frame.f_builtins['exec']('import os') }}`, `attribute "gi_frame" is an attribute of Python generator, frame or code objects`},
	{"frame globals item", `{{ g['gi_frame']['f_globals'] }}`, `item name "gi_frame"`},
	{"mro", `{{ (range|attr('mro'))() }}`, `"attr" filter name "mro" is type.mro`},
	{"code consts", `{{ f.co_consts }}`, `attribute "co_consts"`},
	{"py2 globals", `{{ lipsum.func_globals }}`, `attribute "func_globals"`},
	{"traceback", `{{ e.tb_frame }}`, `attribute "tb_frame"`},
	{"internal via set", `{% set n = 'f_globals' %}{{ z[n] }}`, `"f_globals" (a literal the template assigns)`},

	// dunder names in any string literal
	{"dunder literal", `{% set s = 'x.__class__' %}{{ s }}`, `string literal "x.__class__" contains the dunder name "__class__"`},
	{"dunder in dict key", `{{ {'__globals__': 1} }}`, `dunder name "__globals__"`},
	{"dunder escaped", `{{ '\x5f_init__' }}`, `dunder name "__init__"`},

	// attribute arguments of filters
	{"map attribute", `{{ x|map(attribute='__class__')|list }}`, `attribute "__class__" of the "map" filter`},
	{"map dotted", `{{ x|map(attribute='a._b')|list }}`, `"_b" starts with "_"`},
	{"map computed", `{{ x|map(attribute=n)|list }}`, `attribute of the "map" filter is not written as a literal`},
	{"map filter name", `{{ x|map(f)|list }}`, `the filter applied by the "map" filter is not named by a literal`},
	{"map map attr", `{{ x|map('map', 'attr', '_x')|list }}`, `"attr" filter name "_x"`},
	{"map unpacked", `{{ x|map(**kw)|list }}`, `unpacked with * or **`},
	{"sort", `{{ x|sort(attribute='_x') }}`, `of the "sort" filter`},
	// sort splits its attribute on "," before "." (make_multi_attrgetter).
	{"sort comma", `{{ messages|sort(attribute='role,_x') }}`, `of the "sort" filter`},
	{"sort comma internals", `{{ messages|sort(attribute='role,gi_frame') }}`, `of the "sort" filter`},
	{"sort positional", `{{ x|sort(false, false, '_x') }}`, `of the "sort" filter`},
	{"groupby", `{{ x|groupby('__class__') }}`, `of the "groupby" filter`},
	{"selectattr", `{{ x|selectattr('gi_frame') }}`, `of the "selectattr" filter`},
	{"rejectattr", `{{ x|rejectattr('_x', 'none') }}`, `of the "rejectattr" filter`},
	{"sum", `{{ x|sum(attribute='_x') }}`, `of the "sum" filter`},
	{"join attribute", `{{ x|join(', ', '_x') }}`, `of the "join" filter`},
	{"unique", `{{ x|unique(attribute='_x') }}`, `of the "unique" filter`},
	{"min", `{{ x|min(attribute='_x') }}`, `of the "min" filter`},
	{"attr unpacked", `{{ x|attr(*n) }}`, `unpacked with * or **`},
	{"filter block attr", `{% filter attr('_x') %}{% endfilter %}`, `"attr" filter name "_x"`},

	// str.format reads attributes named in its format string
	{"format field", `{{ '{0.gi_frame}'.format(g) }}`, `format string reaches attribute "gi_frame"`},
	{"format private field", `{{ '{0._x}'.format(g) }}`, `reaches attribute "_x"`},
	{"format nested field", `{{ '{0:{1._x}}'.format(a, b) }}`, `reaches attribute "_x"`},
	{"format computed", `{{ ('{0._' ~ 'x}').format(g) }}`, `str.format called on a string that is not a literal`},
	{"format map", `{{ ('{x._' ~ 'y}').format_map(d) }}`, `str.format_map called on a string that is not a literal`},
	{"format data", `{{ messages[0].content.format(tools) }}`, `not a literal`},
	{"format via attr", `{{ (messages[0].content|attr('format'))(tools) }}`, `not a literal`},
	{"format alias", `{% set f = messages[0].content.format %}{{ f(tools) }}`, `called through a variable`},
	{"format alias item", `{% set f = ('{0.' ~ 'x}')['format'] %}{{ f(tools) }}`, `called through a variable`},
	{"format via macro", `{% macro m(p) %}{{ p(x) }}{% endmacro %}{{ m(s.format) }}`, `called through a variable`},

	// other templates
	{"include", `{% include "other.j2" %}`, `"include" loads another template`},
	{"import", `{% import "m.j2" as m %}`, `"import" loads another template`},
	{"from import", `{% from "m.j2" import f %}`, `"from ... import" loads another template`},
	{"extends", `{% extends "base.j2" %}`, `"extends" loads another template`},

	// what the lexer sees: raw, comments, whitespace control, no line statements
	{"after raw", `{% raw %}{{ x }}{% endraw -%}{{ x.__class__ }}`, `attribute "__class__"`},
	{"comment end in string", `{# '#}' {{ x.__class__ }} #}`, `attribute "__class__"`},
	{"whitespace control", "{%- set n = '_' ~ '_class__' -%}\n{{- x[n] -}}", `string operations`},
	{"line comment is code", "## {{ x.__class__ }}", `attribute "__class__"`},
	{"line statement is text", "# set n = '_x'\n{{ x.__class__ }}", `attribute "__class__"`},
	{"plus whitespace control", "{%+ set n = '_x' +%}{{ z[n] }}", `"_x"`},
	{"unclosed raw at end", `{{ x.__class__ }}{% raw %}`, `attribute "__class__"`},
}

func TestJinjaHostileRefused(t *testing.T) {
	for _, c := range jinjaHostile {
		err := CheckJinja(c.src)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %q passed", c.name, c.src)
			continue
		}
		if e.Syntax || e.Dialect != Jinja || !strings.Contains(e.Reason, c.reason) || e.Line < 1 || e.Col < 1 {
			t.Errorf("%s: %q: got %#v, want a refusal with %q", c.name, c.src, e, c.reason)
		}
		// undeclared, the same text is refused the same way
		if err2 := Check(c.src); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("%s: Check = %v, CheckJinja = %v", c.name, err2, err)
		}
	}
}

// What real templates do stays allowed.
var jinjaBenign = []struct{ name, src string }{
	{"index arithmetic", `{% for m in messages %}{{ messages[loop.index0 - 1]['content'] }}{% endfor %}`},
	{"attribute chain", `{% for tool in tools %}{{ tool.function.name }}{{ tool['function']['parameters'] | tojson }}{% endfor %}`},
	{"literal items", `{{ messages[0]['role'] }}{{ message['tool_calls'] }}{{ x[-1] }}{{ messages[1:] }}{{ x[::2] }}{{ x[:-1] }}`},
	{"range index", `{% for i in range(messages|length) %}{{ messages[i]['role'] }}{% endfor %}`},
	{"range from loop", `{% for m in messages %}{% for k in range(loop.index0 + 1, messages|length) %}{{ messages[k].role }}{% endfor %}{% endfor %}`},
	{"namespace index", `{% set ns = namespace(i=0) %}{% for m in messages %}{% set ns.i = loop.index0 %}{% endfor %}{{ messages[ns.i]['content'] }}`},
	{"key of iterated mapping", `{% if args is mapping %}{% for k in args %}{{ args[k] }}{% endfor %}{% for k in args if k not in ['a'] %}{{ args[k] }}{% endfor %}{% endif %}`},
	{"key of guarded mapping", `{% if m.args is mapping and m.args %}{% for k in m.args|sort %}{{ m.args[k] }}{% endfor %}{% endif %}`},
	{"key from keys", `{% for k in args.keys() %}{{ args[k] }}{% endfor %}`},
	{"key from dictsort", `{% for k, v in d|dictsort %}{{ d[k] }}{{ v['type'] }}{% endfor %}`},
	{"key from items", `{% for k, v in tool_call.arguments.items() %}{{ tool_call.arguments[k] }}{% endfor %}`},
	{"key in macro", `{% macro r(d) %}{% if d is mapping %}{% for k in d %}{{ d[k] | tojson }}{% endfor %}{% endif %}{% endmacro %}{% for m in messages %}{{ r(m) }}{% endfor %}`},
	{"literal variable", `{% set key = 'content' %}{{ message[key] }}`},
	{"literal macro argument", `{% macro field(m, key) %}{{ m[key] }}{% endmacro %}{{ field(messages[0], 'content') }}`},
	{"string work", `{{ '<|im_start|>' + message['role'] + '\n' + message['content'] | trim + '<|im_end|>' }}{{ content.split('</think>')[-1].lstrip('\n') }}`},
	{"format literal", `{{ '{0} {1[a]} {x:>{w}}'.format(a, b, x=c, w=3) }}{{ '%s %d'|format(a, 1) }}{{ '%s' % a }}`},
	{"data format key", `{{ prop.format }}{{ prop['format'] }}{{ schema.format | default('') }}`},
	{"underscore names in text", `{{ '<_end_think>' }}{{ 'tool_calls' }}{{ 'mcp__github__create_issue' }} __init__ in text {# __class__ #}{% raw %}{{ x.__class__ }}{% endraw %}`},
	{"underscore variables", `{% set _args = tool_call.arguments %}{% for k, v in _args.items() %}{{ k }}={{ v }}{% endfor %}`},
	{"filters", `{{ x|map(attribute='name')|join(', ') }}{{ x|selectattr('type', 'equalto', 'function')|list }}{{ x|sort(attribute='a.b') }}{{ x|map('upper')|list }}{{ x|groupby('role') }}`},
	{"generation", `{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% endif %}{% endfor %}`},
	{"loop controls", `{% for m in messages %}{% if loop.first %}{% continue %}{% endif %}{% if loop.last %}{% break %}{% endif %}{% endfor %}`},
	{"dunder-free internals words", `{{ x.frame }}{{ x['globals'] }}{{ x.code }}{{ x.f_name }}`},
	{"call block", `{% macro m() %}{{ caller(1) }}{% endmacro %}{% call(n) m() %}{{ messages[n] }}{% endcall %}`},
}

func TestJinjaBenignPass(t *testing.T) {
	for _, c := range jinjaBenign {
		if err := CheckJinja(c.src); err != nil {
			t.Errorf("%s: %v\n%s", c.name, err, c.src)
		}
		if err := Check(c.src); err != nil {
			t.Errorf("%s: Check: %v", c.name, err)
		}
	}
}

func TestJinjaSyntaxErrors(t *testing.T) {
	for _, c := range []struct{ src, reason string }{
		{`{{ x `, `unexpected end of template`},
		{`{% for x in y %}`, `Unexpected end of template`},
		{`{% do x %}`, `Encountered unknown tag 'do'`},
		{`{{ x.__class__ `, `unexpected end of template`},
		{"{# x", `Missing end of comment tag`},
		{"{% raw %}x", `Missing end of raw directive`},
		{`{{ '\x5' }}`, `truncated \xXX escape`},
		{`{% for a, in x %}{% endfor %}`, `expected token 'in'`},
		{`{{ (1 }}`, `unexpected '}'`},
		{strings.Repeat("(", 300) + "x" + strings.Repeat(")", 300), ``},
		{"{{ " + strings.Repeat("(", 300) + "x" + strings.Repeat(")", 300) + " }}", `nesting deeper than 256`},
		{"{{ x" + strings.Repeat(".a", 300) + " }}", `syntax tree nested`},
		{strings.Repeat("{% if x %}", 200) + strings.Repeat("{% endif %}", 200), `nesting deeper than 256`},
		{strings.Repeat("x", maxSourceSize+1), `over the 1048576-byte limit`},
	} {
		err := CheckJinja(c.src)
		if c.reason == "" {
			if err != nil {
				t.Errorf("%.40q: %v", c.src, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || !e.Syntax || !strings.Contains(e.Reason, c.reason) {
			t.Errorf("%.60q: got %v, want a syntax error with %q", c.src, err, c.reason)
		}
	}
}

// Error positions point at the construct.
func TestJinjaErrorPosition(t *testing.T) {
	err := CheckJinja("{% for m in messages %}\n  {{ m['é'] }}{{ m.__class__ }}\n{% endfor %}")
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || e.Col != 19 {
		t.Fatalf("got %#v, want line 2 column 19", err)
	}
	if !strings.Contains(err.Error(), "Jinja template refused at line 2, column 19: attribute \"__class__\"") {
		t.Fatalf("message %q", err.Error())
	}
}
