"""Go's ``text/template`` (and ``html/template``'s escaping) in pure Python, for Alertmanager templates.

``GoTemplates`` holds named templates and renders field templates; :class:`TemplateError`
(with :class:`ParseError` and :class:`ExecError`) is the only exception it raises.
Modules: ``lexer`` (tokens), ``parse`` (trees), ``exec`` (compiling trees to closures and
running them), ``values`` (Go's printing and truth), ``fmt`` (``printf``), ``funcs``
(the functions), ``htmlesc`` (contextual HTML escaping), ``library`` (the set).
"""

from .errors import ExecError, ParseError, TemplateError
from .funcs import FUNCS
from .library import GoTemplates
from .values import GoDuration, SafeHTML, SafeURL

__all__ = ["FUNCS", "ExecError", "GoDuration", "GoTemplates", "ParseError", "SafeHTML", "SafeURL", "TemplateError"]
