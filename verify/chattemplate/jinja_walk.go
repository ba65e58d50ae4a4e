package chattemplate

// children returns a node's direct children in source order (nil entries
// skipped).
func children(n jnode) []jnode {
	var out []jnode
	add := func(ns ...jnode) {
		for _, c := range ns {
			if c != nil {
				out = append(out, c)
			}
		}
	}
	switch n := n.(type) {
	case *jTemplate:
		add(n.Body...)
	case *jOutput:
		add(n.Nodes...)
	case *jFor:
		add(n.Target, n.Iter)
		add(n.Test)
		add(n.Body...)
		add(n.Else...)
	case *jIf:
		add(n.Test)
		add(n.Body...)
		for _, e := range n.Elif {
			add(e)
		}
		add(n.Else...)
	case *jMacro:
		for _, a := range n.Args {
			add(a)
		}
		add(n.Defaults...)
		add(n.Body...)
	case *jCallBlock:
		for _, a := range n.Args {
			add(a)
		}
		add(n.Defaults...)
		add(n.Call)
		add(n.Body...)
	case *jGeneration:
		add(n.Body...)
	case *jFilterBlock:
		add(n.Filter)
		add(n.Body...)
	case *jWith:
		for i := range n.Targets {
			add(n.Targets[i], n.Values[i])
		}
		add(n.Body...)
	case *jBlock:
		add(n.Body...)
	case *jExtends:
		add(n.Template)
	case *jInclude:
		add(n.Template)
	case *jImport:
		add(n.Template)
	case *jFromImport:
		add(n.Template)
	case *jAssign:
		add(n.Target, n.Node)
	case *jAssignBlock:
		add(n.Target)
		if n.Filter != nil {
			add(n.Filter)
		}
		add(n.Body...)
	case *jScope:
		add(n.Option)
		add(n.Body...)
	case *jTuple:
		add(n.Items...)
	case *jList:
		add(n.Items...)
	case *jDict:
		for _, p := range n.Items {
			add(p)
		}
	case *jPair:
		add(n.Key, n.Value)
	case *jKeyword:
		add(n.Value)
	case *jCondExpr:
		add(n.Expr1, n.Test, n.Expr2)
	case *jBin:
		add(n.Left, n.Right)
	case *jUnary:
		add(n.Node)
	case *jConcat:
		add(n.Nodes...)
	case *jCompare:
		add(n.Expr)
		for _, o := range n.Ops {
			add(o)
		}
	case *jOperand:
		add(n.Expr)
	case *jGetattr:
		add(n.Node)
	case *jGetitem:
		add(n.Node, n.Arg)
	case *jSlice:
		add(n.Start, n.Stop, n.Step)
	case *jCall:
		add(n.Node)
		add(n.Args...)
		for _, k := range n.Kwargs {
			add(k)
		}
		add(n.DynArgs, n.DynKwargs)
	case *jFilter:
		add(n.Node)
		add(n.Args...)
		for _, k := range n.Kwargs {
			add(k)
		}
		add(n.DynArgs, n.DynKwargs)
	case *jTest:
		add(n.Node)
		add(n.Args...)
		for _, k := range n.Kwargs {
			add(k)
		}
		add(n.DynArgs, n.DynKwargs)
	}
	return out
}

// treeDepth is the deepest nesting in the tree, computed without recursion:
// chains such as a.b.c... or 1+1+1... nest without recursing in the parser.
func treeDepth(root jnode) int {
	type item struct {
		n jnode
		d int
	}
	stack := []item{{root, 1}}
	max := 0
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.d > max {
			max = it.d
		}
		for _, c := range children(it.n) {
			stack = append(stack, item{c, it.d + 1})
		}
	}
	return max
}
