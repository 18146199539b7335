"""Parse trees of Go templates: ``parse(name, text)`` gives every template the text defines.

The grammar and checks are Go's ``text/template/parse``: functions must exist and variables
must be declared when the template is parsed; ``define`` only at top level; ``break`` and
``continue`` only inside ``range``; ``block`` defines a template and calls it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from .errors import ParseError
from .lexer import Token, tokenize

__all__ = [
    "ActionNode",
    "BoolNode",
    "BreakNode",
    "ChainNode",
    "CommandNode",
    "ContinueNode",
    "DotNode",
    "FieldNode",
    "IdentifierNode",
    "IfNode",
    "ListNode",
    "NilNode",
    "Node",
    "NumberNode",
    "PipeNode",
    "RangeNode",
    "StringNode",
    "TemplateNode",
    "TextNode",
    "VariableNode",
    "WithNode",
    "is_empty",
    "parse",
]


class Node:
    """A parse tree node."""

    __slots__ = ()


@dataclass(slots=True)
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)


@dataclass(slots=True)
class TextNode(Node):
    text: str


@dataclass(slots=True)
class FieldNode(Node):
    idents: tuple[str, ...]


@dataclass(slots=True)
class VariableNode(Node):
    idents: tuple[str, ...]  # the variable name first, then field names


@dataclass(slots=True)
class ChainNode(Node):
    node: Node
    fields: tuple[str, ...]


@dataclass(slots=True)
class IdentifierNode(Node):
    name: str


@dataclass(slots=True)
class DotNode(Node):
    pass


@dataclass(slots=True)
class NilNode(Node):
    pass


@dataclass(slots=True)
class BoolNode(Node):
    value: bool


@dataclass(slots=True)
class NumberNode(Node):
    value: int | float
    text: str


@dataclass(slots=True)
class StringNode(Node):
    value: str


@dataclass(slots=True)
class CommandNode(Node):
    args: list[Node]


@dataclass(slots=True)
class PipeNode(Node):
    line: int
    decl: list[str]
    is_assign: bool
    cmds: list[CommandNode]


@dataclass(slots=True)
class ActionNode(Node):
    line: int
    pipe: PipeNode


@dataclass(slots=True)
class IfNode(Node):
    line: int
    pipe: PipeNode
    body: ListNode
    else_body: ListNode | None


@dataclass(slots=True)
class WithNode(Node):
    line: int
    pipe: PipeNode
    body: ListNode
    else_body: ListNode | None


@dataclass(slots=True)
class RangeNode(Node):
    line: int
    pipe: PipeNode
    body: ListNode
    else_body: ListNode | None


@dataclass(slots=True)
class TemplateNode(Node):
    line: int
    name: str
    pipe: PipeNode | None


@dataclass(slots=True)
class BreakNode(Node):
    line: int


@dataclass(slots=True)
class ContinueNode(Node):
    line: int


_LITERALS = (BoolNode, DotNode, NilNode, NumberNode, StringNode)


def is_empty(node: Node) -> bool:
    """Go's ``IsEmptyTree``: only whitespace text (and nothing else) in the tree."""
    if isinstance(node, ListNode):
        return all(is_empty(n) for n in node.nodes)
    if isinstance(node, TextNode):
        return not node.text.strip()
    return False


def number_value(text: str) -> int | float:
    """A Go number literal as an int, or a float when it has a fraction or exponent."""
    t = text.replace("_", "")
    if t.endswith("i"):
        raise ValueError("complex numbers are not supported")
    sign = -1 if t.startswith("-") else 1
    body = t.lstrip("+-")
    low = body.lower()
    if low.startswith("0x"):
        if "." in low or "p" in low:
            return sign * float.fromhex(body)
        return sign * int(body, 16)
    if low.startswith(("0b", "0o")):
        return sign * int(body, 0)
    if "." in low or "e" in low:
        return sign * float(body)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body, 8)
    return sign * int(body)


class _End(Exception):
    """An ``{{end}}`` or ``{{else}}`` that closes the list being parsed."""

    def __init__(self, keyword: str, line: int) -> None:
        self.keyword = keyword
        self.line = line


class _Parser:
    def __init__(self, name: str, text: str, funcs: Collection[str]) -> None:
        self.name = name
        self.tokens = tokenize(name, text)
        self.pos = 0
        self.funcs = funcs
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.trees: dict[str, ListNode] = {}

    # ---------------------------------------------------------------- tokens
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def next(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def fail(self, tok: Token, message: str) -> ParseError:
        return ParseError(self.name, tok.line, message)

    def unexpected(self, tok: Token, context: str) -> ParseError:
        what = {"eof": "EOF", "right": '"}}"', "left": '"{{"'}.get(tok.kind, f"{tok.value!r}")
        return self.fail(tok, f"unexpected {what} in {context}")

    def expect(self, kind: str, context: str) -> Token:
        tok = self.next()
        if tok.kind != kind:
            raise self.unexpected(tok, context)
        return tok

    # ---------------------------------------------------------------- top level
    def parse(self) -> dict[str, ListNode]:
        root = ListNode()
        while self.peek().kind != "eof":
            tok = self.peek()
            if tok.kind == "left" and self.tokens[self.pos + 1].kind == "keyword" \
                    and self.tokens[self.pos + 1].value == "define":
                self.pos += 2
                self.definition()
                continue
            try:
                root.nodes.append(self.text_or_action())
            except _End as end:
                raise self.fail(tok, f"unexpected {{{{{end.keyword}}}}}") from None
        self.add(self.name, root)
        return self.trees

    def add(self, name: str, tree: ListNode) -> None:
        old = self.trees.get(name)
        if old is not None and is_empty(tree):
            return
        self.trees[name] = tree

    def definition(self) -> None:
        tok = self.next()
        if tok.kind != "string":
            raise self.unexpected(tok, "define clause")
        self.expect("right", "define clause")
        saved, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved
        if end != "end":
            raise self.fail(tok, "unexpected {{else}} in define clause")
        self.add(tok.value, body)

    def item_list(self) -> tuple[ListNode, str]:
        """Nodes up to ``{{end}}`` or ``{{else}}``; returns the list and which one ended it."""
        lst = ListNode()
        while True:
            tok = self.peek()
            if tok.kind == "eof":
                raise self.fail(tok, "unexpected EOF")
            try:
                lst.nodes.append(self.text_or_action())
            except _End as end:
                return lst, end.keyword

    def text_or_action(self) -> Node:
        tok = self.next()
        if tok.kind == "text":
            return TextNode(tok.value)
        if tok.kind == "left":
            return self.action()
        raise self.unexpected(tok, "input")

    def action(self) -> Node:
        tok = self.peek()
        if tok.kind == "keyword":
            self.next()
            kw = tok.value
            if kw == "end":
                self.expect("right", "end")
                raise _End("end", tok.line)
            if kw == "else":
                nxt = self.peek()
                if nxt.kind == "keyword" and nxt.value in ("if", "with"):
                    raise _End("else " + nxt.value, tok.line)  # the chained clause starts here
                self.expect("right", "else")
                raise _End("else", tok.line)
            if kw in ("if", "with", "range"):
                return self.control(kw, tok)
            if kw == "template":
                return self.template(tok)
            if kw == "block":
                return self.block(tok)
            if kw in ("break", "continue"):
                if not self.range_depth:
                    raise self.fail(tok, f"{{{{{kw}}}}} outside {{{{range}}}}")
                self.expect("right", kw)
                return BreakNode(tok.line) if kw == "break" else ContinueNode(tok.line)
            raise self.fail(tok, f"unexpected <{kw}> in command")
        pipe = self.pipeline("command", "right")
        return ActionNode(tok.line, pipe)

    def control(self, kw: str, tok: Token) -> Node:
        mark = len(self.vars)
        pipe = self.pipeline(kw, "right")
        if kw == "range":
            self.range_depth += 1
        body, end = self.item_list()
        if kw == "range":
            self.range_depth -= 1
        else_body: ListNode | None = None
        if end == "else":
            else_body, end = self.item_list()
            if end != "end":
                raise self.fail(tok, f"expected end; found {{{{{end}}}}}")
        elif end in ("else if", "else with"):
            if end == "else with" and kw != "with":
                raise self.fail(tok, "unexpected {{else with}} outside {{with}}")
            if end == "else if" and kw != "if":
                raise self.fail(tok, "unexpected {{else if}} outside {{if}}")
            inner_tok = self.next()  # the `if` / `with` keyword; it consumes the shared {{end}}
            else_body = ListNode([self.control(inner_tok.value, inner_tok)])
        del self.vars[mark:]
        cls = {"if": IfNode, "with": WithNode, "range": RangeNode}[kw]
        return cls(tok.line, pipe, body, else_body)  # type: ignore[no-any-return]

    def template_name(self, context: str) -> str:
        tok = self.next()
        if tok.kind != "string":
            raise self.unexpected(tok, context)
        return tok.value

    def template(self, tok: Token) -> Node:
        name = self.template_name("template clause")
        pipe = None
        if self.peek().kind != "right":
            pipe = self.pipeline("template clause", "right")
        else:
            self.next()
        return TemplateNode(tok.line, name, pipe)

    def block(self, tok: Token) -> Node:
        name = self.template_name("block clause")
        pipe = self.pipeline("block clause", "right")
        saved, self.vars = self.vars, ["$"]
        saved_depth, self.range_depth = self.range_depth, 0
        body, end = self.item_list()
        self.vars, self.range_depth = saved, saved_depth
        if end != "end":
            raise self.fail(tok, "unexpected {{else}} in block clause")
        self.add(name, body)
        return TemplateNode(tok.line, name, pipe)

    # ---------------------------------------------------------------- pipelines
    def pipeline(self, context: str, end: str) -> PipeNode:
        start = self.peek()
        pipe = PipeNode(start.line, [], False, [])
        self.declarations(pipe, context)
        while True:
            tok = self.peek()
            if tok.kind == end:
                self.next()
                if not pipe.cmds:
                    raise self.fail(tok, f"missing value for {context}")
                break
            if tok.kind in ("right", "rparen", "eof"):
                raise self.unexpected(tok, context)
            pipe.cmds.append(self.command(end))
            if self.peek().kind == "pipe":
                self.next()
                if self.peek().kind == end:
                    raise self.fail(self.peek(), f"missing command after | in {context}")
        for i, cmd in enumerate(pipe.cmds[1:], start=2):
            if isinstance(cmd.args[0], _LITERALS):
                raise self.fail(start, f"non executable command in pipeline stage {i}")
        for name in pipe.decl:
            if not pipe.is_assign:
                self.vars.append(name)
        return pipe

    def declarations(self, pipe: PipeNode, context: str) -> None:
        tok = self.peek()
        if tok.kind != "var":
            return
        after = self.tokens[self.pos + 1]
        if after.kind in ("declare", "assign"):
            self.pos += 2
            pipe.is_assign = after.kind == "assign"
            if pipe.is_assign and tok.value not in self.vars:
                raise self.fail(tok, f"undefined variable {tok.value!r}")
            pipe.decl.append(tok.value)
            return
        if after.kind == "comma":
            if context != "range":
                raise self.fail(after, f"too many declarations in {context}")
            second = self.tokens[self.pos + 2]
            op = self.tokens[self.pos + 3]
            if second.kind != "var" or op.kind not in ("declare", "assign"):
                raise self.fail(after, "range can only initialize variables")
            self.pos += 4
            pipe.is_assign = op.kind == "assign"
            pipe.decl.extend([tok.value, second.value])

    def command(self, end: str) -> CommandNode:
        cmd = CommandNode([])
        while True:
            operand = self.operand()
            if operand is None:
                raise self.unexpected(self.peek(), "operand")
            cmd.args.append(operand)
            tok = self.peek()
            if tok.kind in ("pipe", end):
                break
            if tok.kind in ("right", "rparen", "eof") or not tok.space:
                raise self.unexpected(tok, "operand")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        fields: list[str] = []
        while self.peek().kind == "field" and not self.peek().space:
            fields.append(self.next().value)
        if not fields:
            return node
        if isinstance(node, FieldNode):
            return FieldNode(node.idents + tuple(fields))
        if isinstance(node, VariableNode):
            return VariableNode(node.idents + tuple(fields))
        if isinstance(node, _LITERALS):
            raise self.fail(self.peek(), "unexpected . after term")
        return ChainNode(node, tuple(fields))

    def term(self) -> Node | None:
        tok = self.peek()
        kind = tok.kind
        if kind == "ident":
            self.next()
            if tok.value not in self.funcs:
                raise self.fail(tok, f"function {tok.value!r} not defined")
            return IdentifierNode(tok.value)
        if kind == "dot":
            self.next()
            return DotNode()
        if kind == "nil":
            self.next()
            return NilNode()
        if kind == "var":
            self.next()
            if tok.value not in self.vars:
                raise self.fail(tok, f"undefined variable {tok.value!r}")
            return VariableNode((tok.value,))
        if kind == "field":
            self.next()
            return FieldNode((tok.value,))
        if kind == "bool":
            self.next()
            return BoolNode(tok.value == "true")
        if kind == "char":
            self.next()
            return NumberNode(ord(tok.value), repr(tok.value))
        if kind == "number":
            self.next()
            try:
                return NumberNode(number_value(tok.value), tok.value)
            except (ValueError, OverflowError) as exc:
                raise self.fail(tok, f"illegal number syntax: {tok.value!r} ({exc})") from None
        if kind == "lparen":
            self.next()
            return self.pipeline("parenthesized pipeline", "rparen")
        if kind == "string":
            self.next()
            return StringNode(tok.value)
        return None


def parse(name: str, text: str, funcs: Collection[str]) -> dict[str, ListNode]:
    """Every template ``text`` defines, by name; the text outside ``define`` is ``name``."""
    try:
        return _Parser(name, text, funcs).parse()
    except RecursionError:
        raise ParseError(name, 1, "template nested too deeply") from None
