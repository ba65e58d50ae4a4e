package chattemplate

// The Jinja syntax tree mirrors jinja2.nodes: one Go type per node class the
// parser (jinja2/parser.py, Jinja 3.1) produces, with the same fields.

type jnode interface{ at() int }

// pos is a rune offset into the (newline-normalised) source.
type pos int

func (p pos) at() int { return int(p) }

type (
	jTemplate struct {
		pos
		Body []jnode
	}
	jOutput struct {
		pos
		Nodes []jnode
	}
	jTemplateData struct {
		pos
		Data string
	}
	jFor struct {
		pos
		Target, Iter jnode
		Body, Else   []jnode
		Test         jnode // nil when absent
		Recursive    bool
		End          int // offset of the tag that ends the body (endfor or else)
	}
	jIf struct {
		pos
		Test jnode
		Body []jnode
		Elif []*jIf
		Else []jnode
	}
	jMacro struct {
		pos
		Name     string
		Args     []*jName
		Defaults []jnode
		Body     []jnode
	}
	jCallBlock struct {
		pos
		Call     *jCall
		Args     []*jName
		Defaults []jnode
		Body     []jnode
	}
	// jGeneration is transformers' {% generation %} block (AssistantTracker);
	// jinja2 represents it as a CallBlock of an extension method.
	jGeneration struct {
		pos
		Body []jnode
	}
	jFilterBlock struct {
		pos
		Body   []jnode
		Filter *jFilter
	}
	jWith struct {
		pos
		Targets, Values []jnode
		Body            []jnode
	}
	jBlock struct {
		pos
		Name             string
		Body             []jnode
		Scoped, Required bool
	}
	jExtends struct {
		pos
		Template jnode
	}
	jInclude struct {
		pos
		Template                   jnode
		WithContext, IgnoreMissing bool
	}
	jImport struct {
		pos
		Template    jnode
		Target      string
		WithContext bool
	}
	jFromImport struct {
		pos
		Template    jnode
		Names       [][2]string // name, alias ("" when none)
		WithContext bool
	}
	jAssign struct {
		pos
		Target, Node jnode
	}
	jAssignBlock struct {
		pos
		Target jnode
		Filter *jFilter // nil when absent
		Body   []jnode
	}
	// jScope is {% autoescape %}: Scope([ScopedEvalContextModifier(options, body)]).
	jScope struct {
		pos
		Option jnode
		Body   []jnode
	}
	jBreak    struct{ pos }
	jContinue struct{ pos }

	jName struct {
		pos
		Name string
		Ctx  string // load, store, param
	}
	jNSRef struct {
		pos
		Name, Attr string
	}
	jConst struct {
		pos
		Kind constKind
		Str  string // the string value, or the literal's text for numbers
		Raw  string // for strings: the source text of every piece, joined
		Bool bool
	}
	jTuple struct {
		pos
		Items []jnode
		Ctx   string
	}
	jList struct {
		pos
		Items []jnode
	}
	jDict struct {
		pos
		Items []*jPair
	}
	jPair struct {
		pos
		Key, Value jnode
	}
	jKeyword struct {
		pos
		Key   string
		Value jnode
	}
	jCondExpr struct {
		pos
		Test, Expr1 jnode
		Expr2       jnode // nil when absent
	}
	jBin struct {
		pos
		Op          string // Add Sub Mul Div FloorDiv Mod Pow And Or
		Left, Right jnode
	}
	jUnary struct {
		pos
		Op   string // Not Neg Pos
		Node jnode
	}
	jConcat struct {
		pos
		Nodes []jnode
	}
	jCompare struct {
		pos
		Expr jnode
		Ops  []*jOperand
	}
	jOperand struct {
		pos
		Op   string
		Expr jnode
	}
	jGetattr struct {
		pos
		Node jnode
		Attr string
		Ctx  string
	}
	jGetitem struct {
		pos
		Node, Arg jnode
		Ctx       string
	}
	jSlice struct {
		pos
		Start, Stop, Step jnode // nil when absent
	}
	jCall struct {
		pos
		Node               jnode
		Args               []jnode
		Kwargs             []*jKeyword
		DynArgs, DynKwargs jnode
	}
	jFilter struct {
		pos
		Node               jnode // nil in filter blocks and {% set x | f %}
		Name               string
		Args               []jnode
		Kwargs             []*jKeyword
		DynArgs, DynKwargs jnode
	}
	jTest struct {
		pos
		Node               jnode
		Name               string
		Args               []jnode
		Kwargs             []*jKeyword
		DynArgs, DynKwargs jnode
	}
)

type constKind uint8

const (
	constStr constKind = iota
	constInt
	constFloat
	constBool
	constNone
)
