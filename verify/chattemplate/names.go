package chattemplate

import "strings"

// pyInternals are attribute names without a leading "_" that still reach the
// interpreter: generator, coroutine, frame, traceback and code objects
// (jinja2's sandbox blocks these too), Python 2 function and method
// attributes, and type.mro. (()|select).gi_frame.f_builtins['exec'] is code
// execution in an unsandboxed jinja2 without a single underscore.
var pyInternals = map[string]bool{}

func init() {
	for _, n := range strings.Fields(`
		gi_code gi_frame gi_running gi_suspended gi_yieldfrom
		cr_await cr_code cr_frame cr_origin cr_running cr_suspended
		ag_await ag_code ag_frame ag_running ag_suspended
		f_back f_builtins f_code f_generator f_globals f_lasti f_lineno f_locals f_trace f_trace_lines f_trace_opcodes
		tb_frame tb_lasti tb_lineno tb_next
		co_argcount co_cellvars co_code co_consts co_exceptiontable co_filename co_firstlineno co_flags co_freevars
		co_kwonlyargcount co_lines co_linetable co_lnotab co_name co_names co_nlocals co_positions
		co_posonlyargcount co_qualname co_stacksize co_varnames
		func_closure func_code func_defaults func_dict func_doc func_globals func_name
		im_class im_func im_self
		mro`) {
		pyInternals[n] = true
	}
}

// unsafeName says why an attribute or item name reaches Python internals, or
// returns "".
func unsafeName(s string) string {
	switch {
	case strings.HasPrefix(s, "_"):
		return `starts with "_" (reaches Python internals)`
	case s == "mro":
		return `is type.mro, which reaches Python internals`
	case pyInternals[s]:
		return `is an attribute of Python generator, frame or code objects (reaches Python internals)`
	}
	return ""
}
