"""Executing parsed Go templates: each node compiles once into a Python closure.

Semantics are Go's ``text/template`` with ``missingkey=zero``: methods win over fields and
map keys (``.Labels.Values`` is the method), a missing map key is the map's zero value
(``""`` for label sets), a missing struct field is an error; ``range`` over maps goes in
key order; variables are scoped to their block; ``template`` calls get a fresh ``$``.
Every failure is an :class:`ExecError` naming the template and line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..data import KV, Alerts, Pairs
from ..gotime import GoTime
from .errors import ExecError
from .funcs import FUNCS, NEEDS_NOW, eval_args
from .parse import (
    ActionNode,
    BoolNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
)
from .values import MISSING, AlertSlice, GoDuration, go_type, printable, struct_fields, truth

__all__ = ["MAX_DEPTH", "Compiled", "State", "compile_tree"]

MAX_DEPTH = 50  # nested template calls; a template that calls itself stops here

Run = Callable[["State", Any], None]
Eval = Callable[["State", Any], Any]


class State:
    """One execution: variables, the output, the templates and the send time."""

    __slots__ = ("depth", "now", "out", "templates", "vars")

    def __init__(self, templates: Mapping[str, Compiled], out: Any, now: GoTime | None, root: Any) -> None:
        self.vars: list[list[Any]] = [["$", root]]
        self.out = out  # a list of strings, or an HtmlOut
        self.templates = templates
        self.depth = 0
        self.now = now

    def lookup(self, name: str) -> Any:
        for var in reversed(self.vars):
            if var[0] == name:
                return var[1]
        raise ExecError(f"undefined variable: {name}")

    def assign(self, name: str, value: Any) -> None:
        for var in reversed(self.vars):
            if var[0] == name:
                var[1] = value
                return
        raise ExecError(f"undefined variable: {name}")


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Compiled:
    """A compiled named template."""

    __slots__ = ("name", "run")

    def __init__(self, name: str, run: Run) -> None:
        self.name = name
        self.run = run


# ---------------------------------------------------------------- the data model's methods

def _no_args(fn: Callable[[Any], Any]) -> Callable[..., Any]:
    def call(recv: Any, *args: Any) -> Any:
        if args:
            raise ExecError(f"wrong number of args: got {len(args)} want 0")
        return fn(recv)

    return call


def _one_arg(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def call(recv: Any, *args: Any) -> Any:
        if len(args) != 1:
            raise ExecError(f"wrong number of args: got {len(args)} want 1")
        return fn(recv, args[0])

    return call


def _remove(kv: KV, keys: Any) -> KV:
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ExecError(f"wrong type for value; expected []string; got {go_type(keys)}")
    return kv.Remove(keys)


def _format(t: GoTime, layout: Any) -> str:
    if not isinstance(layout, str):
        raise ExecError(f"wrong type for value; expected string; got {go_type(layout)}")
    return t.Format(layout)


_METHODS: dict[type, dict[str, Callable[..., Any]]] = {
    KV: {
        "SortedPairs": _no_args(lambda kv: kv.SortedPairs),
        "Names": _no_args(lambda kv: kv.Names),
        "Values": _no_args(lambda kv: kv.Values),
        "Remove": _one_arg(_remove),
    },
    Pairs: {"Names": _no_args(lambda p: p.Names), "Values": _no_args(lambda p: p.Values)},
    Alerts: {
        "Firing": _no_args(lambda a: AlertSlice(a.Firing)),
        "Resolved": _no_args(lambda a: AlertSlice(a.Resolved)),
    },
    GoTime: {
        "Format": _one_arg(_format),
        "Unix": _no_args(lambda t: t.Unix()),
        "UnixMilli": _no_args(lambda t: t.Unix() * 1000 + t.microsecond // 1000),
        "UnixNano": _no_args(lambda t: t.Unix() * 1_000_000_000 + t.microsecond * 1000),
        "UTC": _no_args(lambda t: t.UTC()),
        "IsZero": _no_args(lambda t: t.IsZero()),
        "String": _no_args(str),
        "Year": _no_args(lambda t: t.year),
        "YearDay": _no_args(lambda t: t.timetuple().tm_yday),
        "Day": _no_args(lambda t: t.day),
        "Hour": _no_args(lambda t: t.hour),
        "Minute": _no_args(lambda t: t.minute),
        "Second": _no_args(lambda t: t.second),
        "Nanosecond": _no_args(lambda t: t.microsecond * 1000),
    },
    GoDuration: {
        "Seconds": _no_args(lambda d: d.Seconds()),
        "Minutes": _no_args(lambda d: d.Minutes()),
        "Hours": _no_args(lambda d: d.Hours()),
        "Milliseconds": _no_args(lambda d: d.Milliseconds()),
        "String": _no_args(str),
    },
}
_NO_METHODS: dict[str, Callable[..., Any]] = {}


def _call_method(method: Callable[..., Any]) -> Callable[[Any, str, tuple[Any, ...]], Any]:
    def get(recv: Any, name: str, args: tuple[Any, ...]) -> Any:
        try:
            return method(recv, *args)
        except ExecError as exc:
            raise ExecError(f"error calling {name}: {exc}") from None

    return get


def _struct_field(recv: Any, name: str, args: tuple[Any, ...]) -> Any:
    if args:
        raise ExecError(f"{name} is not a method but has arguments")
    return getattr(recv, name)


def _map_key(zero: Any) -> Callable[[Any, str, tuple[Any, ...]], Any]:
    def get(recv: Any, name: str, args: tuple[Any, ...]) -> Any:
        if args:
            raise ExecError(f"{name} is not a method but has arguments")
        value = recv.get(name, MISSING)
        return zero if value is MISSING else value

    return get


def _no_field(recv: Any, name: str, args: tuple[Any, ...]) -> Any:
    if recv is None:
        raise ExecError(f"nil pointer evaluating interface {{}}.{name}")
    raise ExecError(f"can't evaluate field {name} in type {go_type(recv)}")


def _resolve(t: type, name: str) -> Callable[[Any, str, tuple[Any, ...]], Any]:
    """How ``.name`` reads a value of type ``t`` (Go's evalField order: method, field, map key)."""
    method = _METHODS.get(t, _NO_METHODS).get(name)
    if method is not None:
        return _call_method(method)
    fields = struct_fields(t)
    if fields is not None:
        return _struct_field if name in fields else _no_field
    if issubclass(t, dict):
        return _map_key("" if t is KV else None)  # missingkey=zero: the zero of the map's values
    return _no_field


_RESOLVED: dict[tuple[type, str], Callable[[Any, str, tuple[Any, ...]], Any]] = {}


def _field(recv: Any, name: str, args: tuple[Any, ...] = ()) -> Any:
    """Go's evalField: a method, else a struct field, else a map key (zero value when absent)."""
    key = (type(recv), name)
    get = _RESOLVED.get(key)
    if get is None:
        get = _resolve(key[0], name)
        if len(_RESOLVED) < 10_000:  # names come from template texts: bounded in practice
            _RESOLVED[key] = get
    return get(recv, name, args)


def _chain(recv: Any, names: tuple[str, ...], args: tuple[Any, ...]) -> Any:
    last = len(names) - 1
    for i, name in enumerate(names):
        recv = _field(recv, name, args if i == last else ())
    return recv


# ---------------------------------------------------------------- compiling


class _Compiler:
    def __init__(self, name: str, html: bool) -> None:
        self.name = name
        self.html = html

    def where(self, line: int) -> str:
        return f'template: {self.name}:{line}: executing "{self.name}"'

    def located(self, line: int, fn: Run) -> Run:
        prefix = self.where(line)

        def run(st: State, dot: Any) -> None:
            try:
                fn(st, dot)
            except ExecError as exc:
                if not str(exc).startswith("template: "):
                    raise ExecError(f"{prefix}: {exc}") from None
                raise

        return run

    # ------------------------------------------------------------ lists and nodes
    def nodes(self, node: ListNode) -> Run:
        runs = [self.node(n) for n in node.nodes]
        if not runs:
            return lambda st, dot: None
        if len(runs) == 1:
            return runs[0]

        def run(st: State, dot: Any) -> None:
            for r in runs:
                r(st, dot)

        return run

    def node(self, node: Node) -> Run:
        if isinstance(node, TextNode):
            text = node.text

            def run_text(st: State, dot: Any) -> None:
                st.out.append(text)

            return run_text
        if isinstance(node, ActionNode):
            return self.located(node.line, self.action(node))
        if isinstance(node, IfNode | WithNode):
            return self.located(node.line, self.if_with(node))
        if isinstance(node, RangeNode):
            return self.located(node.line, self.range(node))
        if isinstance(node, TemplateNode):
            return self.located(node.line, self.template(node))
        if isinstance(node, BreakNode):
            def run_break(st: State, dot: Any) -> None:
                raise _Break

            return run_break
        if isinstance(node, ContinueNode):
            def run_continue(st: State, dot: Any) -> None:
                raise _Continue

            return run_continue
        raise ExecError(f"unknown node {type(node).__name__}")

    def action(self, node: ActionNode) -> Run:
        pipe = self.pipe(node.pipe)
        if node.pipe.decl:
            def run_decl(st: State, dot: Any) -> None:
                pipe(st, dot)

            return run_decl

        if self.html:
            return self.html_action(node, pipe)

        def run(st: State, dot: Any) -> None:
            st.out.append(printable(pipe(st, dot)))

        return run

    def html_action(self, node: ActionNode, pipe: Eval) -> Run:
        """An action of an HTML template: a final ``html``/``urlquery`` is left to the writer,
        which puts it where the context's equivalent escaper goes (Go's pipeline rewrite)."""
        cmds = node.pipe.cmds
        head = cmds[-1].args[0]
        last = head.name if isinstance(head, IdentifierNode) and head.name in ("html", "urlquery") else None
        if last is not None and len(cmds) == 1 and len(cmds[0].args) > 1:  # {{ html .A .B }}: Go's _eval_args_
            args = [self.arg(a) for a in cmds[0].args[1:]]

            def pre_args(st: State, dot: Any) -> Any:
                return eval_args(tuple(a(st, dot) for a in args))

            pre: Eval = pre_args
        elif last is not None and len(cmds) > 1 and len(cmds[-1].args) == 1:
            pre = self.pipe(PipeNode(node.pipe.line, [], False, cmds[:-1]))
        else:
            pre, last = pipe, None

        def run_html(st: State, dot: Any) -> None:
            st.out.value(pre(st, dot), last)

        return run_html

    def if_with(self, node: IfNode | WithNode) -> Run:
        pipe = self.pipe(node.pipe)
        body = self.nodes(node.body)
        else_body = self.nodes(node.else_body) if node.else_body is not None else None
        is_with = isinstance(node, WithNode)

        def run(st: State, dot: Any) -> None:
            mark = len(st.vars)
            value = pipe(st, dot)
            if truth(value):
                body(st, value if is_with else dot)
            elif else_body is not None:
                else_body(st, dot)
            del st.vars[mark:]

        return run

    def range(self, node: RangeNode) -> Run:
        pipe = self.pipe(node.pipe)
        body = self.nodes(node.body)
        else_body = self.nodes(node.else_body) if node.else_body is not None else None
        decl = node.pipe.decl
        is_assign = node.pipe.is_assign

        def items(value: Any) -> list[tuple[Any, Any]]:
            if isinstance(value, dict):
                return [(k, value[k]) for k in sorted(value)]
            if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
                return list(enumerate(value))
            if value is None:
                return []
            if isinstance(value, int) and not isinstance(value, bool | GoDuration):
                raise ExecError(f"range can't iterate over {value}")
            raise ExecError(f"range can't iterate over {printable(value)}")

        def run(st: State, dot: Any) -> None:
            mark = len(st.vars)
            value = pipe(st, dot)
            entries = items(value)
            if not entries:
                if else_body is not None:
                    else_body(st, dot)
                del st.vars[mark:]
                return
            for key, elem in entries:
                if decl:
                    if is_assign:
                        if len(decl) == 2:
                            st.assign(decl[0], key)
                        st.assign(decl[-1], elem)
                    else:
                        if len(decl) == 2:
                            st.vars[-2][1] = key
                        st.vars[-1][1] = elem
                inner = len(st.vars)
                try:
                    body(st, elem)
                except _Continue:
                    pass
                except _Break:
                    del st.vars[inner:]
                    break
                del st.vars[inner:]
            del st.vars[mark:]

        return run

    def template(self, node: TemplateNode) -> Run:
        name = node.name
        pipe = self.pipe(node.pipe) if node.pipe is not None else None

        def run(st: State, dot: Any) -> None:
            tmpl = st.templates.get(name)
            if tmpl is None:
                raise ExecError(f"template {name!r} not defined")
            value = pipe(st, dot) if pipe is not None else None
            if st.depth >= MAX_DEPTH:
                raise ExecError(f"exceeded maximum template depth ({MAX_DEPTH})")
            saved = st.vars
            st.vars = [["$", value]]
            st.depth += 1
            try:
                tmpl.run(st, value)
            finally:
                st.depth -= 1
                st.vars = saved

        return run

    # ------------------------------------------------------------ pipelines
    def pipe(self, node: PipeNode) -> Eval:
        cmds = [self.command(c) for c in node.cmds]
        decl = node.decl
        is_assign = node.is_assign
        first, rest = cmds[0], cmds[1:]

        def run(st: State, dot: Any) -> Any:
            value = first(st, dot, MISSING)
            for cmd in rest:
                value = cmd(st, dot, value)
            return value

        if not decl:
            return run
        if is_assign:
            def assign(st: State, dot: Any) -> Any:
                value = run(st, dot)
                for name in decl:
                    st.assign(name, value)
                return value

            return assign

        def declare(st: State, dot: Any) -> Any:
            value = run(st, dot)
            for name in decl:
                st.vars.append([name, value])
            return value

        return declare

    def command(self, node: CommandNode) -> Callable[[State, Any, Any], Any]:
        head = node.args[0]
        args = [self.arg(a) for a in node.args[1:]]
        nargs = len(args)

        def argv(st: State, dot: Any, final: Any) -> tuple[Any, ...]:
            vals = [a(st, dot) for a in args]
            if final is not MISSING:
                vals.append(final)
            return tuple(vals)

        if isinstance(head, IdentifierNode):
            return self.function(head.name, args)
        if isinstance(head, FieldNode):
            names = head.idents
            if not args:
                if len(names) == 1:
                    name = names[0]

                    def field1(st: State, dot: Any, final: Any) -> Any:
                        return _field(dot, name, () if final is MISSING else (final,))

                    return field1

                def field_chain(st: State, dot: Any, final: Any) -> Any:
                    return _chain(dot, names, () if final is MISSING else (final,))

                return field_chain

            def field_args(st: State, dot: Any, final: Any) -> Any:
                return _chain(dot, names, argv(st, dot, final))

            return field_args
        if isinstance(head, VariableNode):
            var, names = head.idents[0], head.idents[1:]

            def variable(st: State, dot: Any, final: Any) -> Any:
                value = st.lookup(var)
                if not names:
                    if nargs or final is not MISSING:
                        raise ExecError(f"can't give argument to non-function {var}")
                    return value
                return _chain(value, names, argv(st, dot, final))

            return variable
        if isinstance(head, ChainNode):
            base = self.arg(head.node)
            fields = head.fields

            def chain(st: State, dot: Any, final: Any) -> Any:
                return _chain(base(st, dot), fields, argv(st, dot, final))

            return chain
        if isinstance(head, NilNode):
            def nil(st: State, dot: Any, final: Any) -> Any:
                raise ExecError("nil is not a command")

            return nil
        value = self.arg(head)
        what = type(head).__name__.removesuffix("Node").lower()

        def literal(st: State, dot: Any, final: Any) -> Any:
            if nargs or final is not MISSING:
                raise ExecError(f"can't give argument to non-function {what}")
            return value(st, dot)

        return literal

    def function(self, name: str, args: list[Eval]) -> Callable[[State, Any, Any], Any]:
        if name in ("and", "or"):
            want = name == "or"

            def lazy(st: State, dot: Any, final: Any) -> Any:
                value: Any = MISSING
                for a in args:
                    value = a(st, dot)
                    if truth(value) == want:
                        return value
                if final is not MISSING:
                    value = final
                if value is MISSING:
                    raise ExecError(f"wrong number of args for {name}: want at least 1 got 0")
                return value

            return lazy
        fn = FUNCS[name]
        needs_now = name in NEEDS_NOW

        def call(st: State, dot: Any, final: Any) -> Any:
            vals = [a(st, dot) for a in args]
            if final is not MISSING:
                vals.append(final)
            if needs_now:
                vals.insert(0, st.now)
            try:
                return fn(*vals)
            except ExecError as exc:
                raise ExecError(f"error calling {name}: {exc}") from None
            except TypeError as exc:
                raise ExecError(f"wrong number of args for {name}: {exc}") from None
            except Exception as exc:  # a function failing is a template error, as Go recovers panics
                raise ExecError(f"error calling {name}: {exc}") from None

        return call

    def arg(self, node: Node) -> Eval:
        if isinstance(node, DotNode):
            return lambda st, dot: dot
        if isinstance(node, StringNode | NumberNode | BoolNode):
            value = node.value
            return lambda st, dot: value
        if isinstance(node, NilNode):
            return lambda st, dot: None
        if isinstance(node, FieldNode):
            names = node.idents
            return lambda st, dot: _chain(dot, names, ())
        if isinstance(node, VariableNode):
            var, names = node.idents[0], node.idents[1:]
            if not names:
                return lambda st, dot: st.lookup(var)
            return lambda st, dot: _chain(st.lookup(var), names, ())
        if isinstance(node, ChainNode):
            base = self.arg(node.node)
            fields = node.fields
            return lambda st, dot: _chain(base(st, dot), fields, ())
        if isinstance(node, PipeNode):
            pipe = self.pipe(node)

            def sub(st: State, dot: Any) -> Any:
                mark = len(st.vars)
                value = pipe(st, dot)
                del st.vars[mark:]
                return value

            return sub
        if isinstance(node, IdentifierNode):
            call = self.function(node.name, [])
            return lambda st, dot: call(st, dot, MISSING)
        raise ExecError(f"can't handle {type(node).__name__} as an argument")


def compile_tree(name: str, tree: ListNode, *, html: bool = False) -> Compiled:
    """Compile one parsed template, for text output or for HTML output (contextual escaping)."""
    return Compiled(name, _Compiler(name, html).nodes(tree))
