// Package chattemplate checks chat templates by parsing them, not by
// searching their text.
//
// # Jinja
//
// CheckJinja parses a template with a port of jinja2 3.1's lexer and parser,
// in the environment transformers renders chat templates with (default
// delimiters, trim_blocks and lstrip_blocks, the loopcontrols extension and
// transformers' {% generation %} tag; no line statements, so "#" lines are
// text). It builds the tree jinja2 builds (testdata/jinja2_trees.json holds
// jinja2's own trees for the corpus and ~700 cases; testdata/jinja_dump.py
// regenerates them) and accepts what jinja2 accepts, with two bounds:
// 1 MiB of source and a syntax tree 256 deep. \N{name} escapes resolve the
// names of printable ASCII characters; any other name reads as U+FFFD (no
// Unicode alias names "_" or an ASCII letter, so no check can be evaded
// that way).
//
// A name position is where jinja2 turns a string into an attribute lookup:
// x.name, x[key] (jinja2 falls back to getattr when the item is missing),
// the attr filter, the attribute arguments of map, sort, unique, min, max,
// sum, join, groupby, selectattr and rejectattr (split on "." and looked up
// part by part), map('attr', ...), and the fields of a str.format or
// str.format_map format string. The template is refused when:
//
//  1. A name starts with "_" after escapes are resolved as Python does (\x5f,
//     \u005f, \U0000005f, \137, \N{LOW LINE}, adjacent literals joined), or
//     is an interpreter internal without one: the gi_/cr_/ag_ attributes of
//     generators and coroutines, f_* of frames, tb_* of tracebacks, co_* of
//     code objects, Python 2's func_*/im_*, and mro (jinja2's sandbox blocks
//     the same set; (()|select).gi_frame.f_builtins reaches exec without a
//     single underscore).
//  2. Any string literal, anywhere, contains a dunder name (__x__ as a whole
//     word).
//  3. A name is not a literal and may be a string the template builds: by
//     "~", by "+" or "*" with a string operand, by "%" formatting, by any
//     filter other than those that only select, reorder or count (list,
//     sort, reverse, unique, select, reject, selectattr, rejectattr,
//     dictsort, items, first, last, min, max, random, default, length,
//     count, int, float, abs, round, sum, wordcount...), by any call or
//     method other than dict.get/items/keys/values/copy/pop, range and
//     namespace, by slicing or indexing a string literal beyond single
//     characters, or by the output of a macro, caller, block or
//     {% set %}...{% endset %}.
//  4. A name is read from render-time data (a variable the renderer passes,
//     or what is read from one): whoever sends the messages chooses it.
//     The one exception is a key of a mapping a loop iterates, used on that
//     same mapping inside that loop when the loop does not reassign it: for
//     k, v in d|items / d|dictsort / d.items(), for k in d.keys(), and for k
//     in d (or d|list, d|sort) inside {% if d is mapping %} (alone or joined
//     by "and", d not reassigned in between). Then d[k] is a dictionary
//     lookup that succeeds; over a list or string, d[k] would fall back to
//     getattr with an element the sender chose.
//  5. {% include %}, {% import %}, {% from ... import %} or {% extends %}
//     appears: they load another template.
//  6. str.format or str.format_map is called on a string that is not a
//     literal, or called through a variable, or its literal format string
//     has a field whose attribute part fails rule 1.
//  7. The attr filter, or a filter with an attribute argument, gets its
//     arguments unpacked with * or **, or map gets a filter name that is not
//     a literal.
//
// Integers, arithmetic without strings (messages[loop.index0 - 1]), slices,
// loop attributes, range() results, lengths and attribute chains with
// literal names stay allowed.
//
// Variables. A variable, namespace attribute, macro parameter, loop
// variable, with target or call-block parameter used as a name holds every
// value the template binds to that name anywhere (set, set blocks, tuple
// unpacking, for targets, macro calls and defaults, varargs, kwargs and their
// keys, caller(...) arguments, namespace(...) and {% set ns.x %}, loop(...)
// in recursive loops, loop.previtem/nextitem), joined to a fixpoint; a loop
// variable inside its loop holds only what that loop and the assignments in
// its body bind. A string literal
// bound to it is checked by rule 1 as if written in place
// ({% set n = 'content' %}{{ m[n] }} passes, {% set n = '_x' %} does not);
// anything rule 3 describes is refused ({% set n = '__cl' ~ 'ass__' %}
// {{ x[n] }}). A name read before the template certainly binds it (not bound
// earlier in the same block or an enclosing one; macro and block bodies start
// afresh) may be the renderer's variable of that name, so rule 4 applies.
// Calls the analysis does not know to be side-effect free (list.append,
// dict.update, a method taken as a value...) may store their arguments in
// any container, so those arguments join every element read afterwards; a
// macro, caller or recursive loop used as a value receives them as
// arguments.
//
// # Go templates (Ollama)
//
// CheckGo parses with text/template/parse and allows only Ollama's functions
// (json, currentDate, yesterdayDate, toTypeScriptType; template/template.go)
// and the text/template builtins except call, and only the fields and
// read-only methods of the values Ollama executes templates with: System,
// Messages, Tools, Response, Prompt, Suffix, Think, ThinkLevel, IsThinkSet
// (and First, which Ollama passed until mid-2024); a message's Role, Content,
// Thinking, Images, ToolCalls, ToolName, ToolCallID; a tool call's ID and
// Function (Index, Name, Arguments); a tool's Type, Items, Function (Name,
// Description, Parameters: Type, Defs, Items, Required, Properties); a
// property's AnyOf, Type, Items, Description, Enum, Properties, Required and
// ToTypeScriptType; String, Get, Len, All and ToMap where the type has them.
// Maps (Arguments, Properties, JSON values) take any key except Set,
// UnmarshalJSON and MarshalJSON, which are methods that change the value in
// the Ollama versions whose api types templates received. Types follow dot
// through range and with, variables ($x, $) and {{ template }} calls to a
// fixpoint; a template nothing invokes is checked with any value.
//
// # Undeclared templates
//
// Check judges a text under each dialect it parses as (Jinja as above; Go
// when Ollama's template.Parse would accept it) and returns the first
// refusal, or a Syntax error when it parses as neither.
package chattemplate
