"""A set of named Go templates (Alertmanager's ``template.Template``), compiled once.

``GoTemplates([(file, text), ...])`` parses the files in order: each ``define`` adds or
replaces a named template (a later non-empty definition wins, as with Go's ``ParseGlob``),
and both a text and an HTML version of every template are compiled up front. A field's
own template text is parsed and compiled on first use and cached; it can call every named
template and may ``define`` its own, visible only to itself (Alertmanager clones the set
for each field).
"""

from __future__ import annotations

from collections import ChainMap, OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ..data import Data
from .errors import ExecError, ParseError
from .exec import Compiled, State, compile_tree
from .funcs import FUNCS
from .htmlesc import HtmlOut
from .parse import ListNode, is_empty, parse

__all__ = ["GoTemplates"]

_FIELD = ""  # the name of a field's own template, as Alertmanager's tmpl.New("")


class _Text:
    """A compiled field template and the templates it defines for itself."""

    __slots__ = ("templates", "top")

    def __init__(self, top: Compiled, templates: Mapping[str, Compiled]) -> None:
        self.top = top
        self.templates = templates


class GoTemplates:
    """Named templates from template files, plus cached field templates (see the module doc)."""

    def __init__(self, files: Iterable[tuple[str, str]] = (), *, cache_size: int = 1024) -> None:
        trees: dict[str, ListNode] = {}
        for filename, text in files:
            for name, tree in parse(filename, text, FUNCS).items():
                if name in trees and is_empty(tree):
                    continue
                trees[name] = tree
        self._trees = trees
        self._named: dict[bool, dict[str, Compiled]] = {
            html: {name: compile_tree(name, tree, html=html) for name, tree in trees.items()}
            for html in (False, True)
        }
        self._cache: OrderedDict[tuple[bool, str], _Text] = OrderedDict()
        self._cache_size = cache_size

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._trees)

    def check(self, text: str, name: str = _FIELD) -> None:
        """Parse ``text``; raises :class:`ParseError` when it does not parse."""
        parse(name, text, FUNCS)

    def _compiled(self, text: str, html: bool) -> _Text:
        key = (html, text)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        trees = parse(_FIELD, text, FUNCS)
        named = self._named[html]
        templates: Mapping[str, Compiled] = named
        try:
            top = compile_tree(_FIELD, trees.pop(_FIELD, ListNode()), html=html)
            if trees:
                templates = ChainMap({n: compile_tree(n, t, html=html) for n, t in trees.items()}, named)
        except RecursionError:
            raise ParseError(_FIELD, 1, "template nested too deeply") from None
        entry = _Text(top, templates)
        self._cache[key] = entry
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return entry

    def execute(self, text: str, data: Data | Any, *, html: bool = False) -> str:
        """Render a field's template text; raises :class:`TemplateError` on any failure."""
        entry = self._compiled(text, html)
        return _run(entry.top, entry.templates, data, html)

    def execute_named(self, name: str, data: Data | Any, *, html: bool = False) -> str:
        """Render a named template with ``data`` as dot (``{{ template "name" . }}``)."""
        tmpl = self._named[html].get(name)
        if tmpl is None:
            raise ExecError(f'template: no template "{name}" associated with template ""')
        return _run(tmpl, self._named[html], data, html)


def _run(tmpl: Compiled, templates: Mapping[str, Compiled], data: Any, html: bool) -> str:
    now = getattr(data, "Now", None)
    if html:
        hout = HtmlOut()
        st = State(templates, hout, now, data)
        _guarded(tmpl, st, data)
        return hout.text()
    out: list[str] = []
    st = State(templates, out, now, data)
    _guarded(tmpl, st, data)
    return "".join(out)


def _guarded(tmpl: Compiled, st: State, data: Any) -> None:
    try:
        tmpl.run(st, data)
    except RecursionError:
        raise ExecError(f"template: {tmpl.name}: nested too deeply") from None
    except (ExecError, ParseError):
        raise
    except Exception as exc:  # a bug in a function must not escape as another exception type
        raise ExecError(f"template: {tmpl.name}: {type(exc).__name__}: {exc}") from None
