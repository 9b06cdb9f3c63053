"""Rewriting a user module's code so that its accesses to shared state are recorded.

What is rewritten (helpers in :mod:`._access`):

* ``obj.x`` read, assigned, deleted, augmented: ``__tc_ra__(obj, "x", site).x``
  (``wa``, ``ua``); a method call ``obj.m(...)`` is not a read of ``m``, but a
  mutating method of a builtin container (``append``, ``pop``, ``update`` ...)
  writes the container: ``__tc_cm__(obj, site).append(...)``.
* ``d[k]`` in any context: ``__tc_sub__(d, site)[k]``, a proxy that records
  and subscripts (slices read are not recorded: CPython copies atomically).
* Builtins that look into a container (``len(c)``, ``sorted(c)`` ...) and a
  container's truth (``if c:``, ``not c``): ``__tc_lk__(c, site)``, a read of
  the container as a whole; ``k in c``: ``__tc_isin__(k, c, site)``, a read
  of key ``k`` of a dict (of the whole of a set or a list).
* A call of any other method ``obj.m(...)``: ``__tc_cr__(c)``,
  which a builtin container records as looked into, for the scheduler's
  dependence (see :mod:`._footprint`) only.
* ``for x in c``, and the first ``for`` of a comprehension: ``__tc_it__(c, site)``
  (``c.items()``, ``.keys()``, ``.values()`` and ``enumerate(c)`` iterate ``c``).
* Globals that some function declares ``global``, and closure variables that
  some inner function declares ``nonlocal``: reads become
  ``__tc_rv__(scope, "name", site, name)``, assignments are followed by
  ``__tc_wv__``/``__tc_uv__``. A closure's scope is a :class:`._access.Scope`
  made on entry to the function that owns the variable.
* Where an exploration takes its scheduling points from the helpers (see
  ``_access.on_access``), the places between two accesses that no helper
  call separates: the value stored into a shared variable, or by an augmented
  assignment to an attribute, ``__tc_st__(value, site)``; the iterable of a
  ``for`` loop (not a ``range``), ``__tc_lp__(iterable, site)``; the end of a
  ``while`` loop's body (and each ``continue``), ``__tc_lw__(site)``.

Nothing else changes: evaluation order, names, line numbers. Annotations and
``match`` patterns are left alone (they are not evaluated as written).
"""

from __future__ import annotations

import ast
import copy
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from threading import get_ident
from types import CodeType
from typing import Any

from threadcheck import _stacks
from threadcheck._races import _footprint
from threadcheck._races._shadow import Site, add_site

MUTATORS = frozenset(
    {
        "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse",
        "update", "setdefault", "popitem", "add", "discard", "difference_update",
        "intersection_update", "symmetric_difference_update", "appendleft",
        "extendleft", "popleft", "rotate", "move_to_end", "subtract", "__setitem__",
        "__delitem__",
    }
)  # fmt: skip
_TAKEN = MUTATORS | {
    "__setitem__", "__delitem__", "get", "__getitem__", "__contains__", "count", "index",
    "copy", "keys", "items", "values",
}  # fmt: skip
"""Container methods that, taken as a value and not called at once (``record =
lines.append``, ``functools.partial(set.add, seen)``, ``d.addCallback(seen.add)``),
are wrapped: each later call is still a point, and a change or a look."""
_KEYED = frozenset({"pop", "setdefault", "__setitem__", "__delitem__"})
"""Mutating methods whose first argument is a dict's key."""
_VIEWS = frozenset({"items", "keys", "values"})
_LOOKING = frozenset(
    {
        "len", "sorted", "list", "tuple", "set", "frozenset", "dict", "sum", "min",
        "max", "any", "all", "iter", "reversed", "enumerate", "zip", "map", "filter",
        "str", "repr", "bool",
    }
)  # fmt: skip
"""Builtins that look into a container they are given."""
_CALLING_BACK = frozenset({"max", "min", "sorted"})
"""Builtins of :data:`_LOOKING` that call the program back while they look (a
key function, an ``__lt__``)."""
_HOLDING = frozenset(
    {
        "heappush", "heappop", "heapify", "heappushpop", "heapreplace", "nlargest",
        "nsmallest", "insort", "insort_left", "insort_right", "bisect", "bisect_left",
        "bisect_right",
    }
)  # fmt: skip
"""Functions of ``heapq`` and ``bisect``: C code that compares the items of the
container it is given, so may call the program back (an ``__lt__``, a key) while
it holds the container."""
_COMPILING = frozenset({"exec", "compile", "eval"})
"""Builtins that compile source the program hands them (rules, plugins loaded
as text): rewritten as its own modules are (see ``_access.own_code``)."""
_RUNNING = frozenset({"exec", "eval"})
"""Those of them that run it too: called from the user's frame, their code
chosen by ``_access.code_args``."""
_HOLDING_CHANGES = frozenset(
    {"heappush", "heappop", "heapify", "heappushpop", "heapreplace", "insort", "insort_left",
     "insort_right"}
)  # fmt: skip
"""Those of :data:`_HOLDING` that change the container (the others look into it)."""
_NOT_CHANGING = frozenset(
    {
        "print", "isinstance", "issubclass", "id", "type", "hash", "getattr", "hasattr",
        "callable", "format", "super", "len",
    }
)  # fmt: skip
"""Builtins that change nothing they are given."""
_NAMESPACES = frozenset({"locals", "vars", "dir"})
"""Builtins that, called bare, show a scope's names: ours among them."""
HELPERS = (
    "ra", "wa", "ua", "st", "sv", "lp", "lw", "it", "cm", "cmk", "cml", "cr", "ck", "oa", "oal",
    "oah", "oaw", "bm", "own_code", "code_args", "ip", "lk", "lkc", "isin", "cached", "cms", "gy",
    "rv", "wv", "wn", "uv", "sub", "subu", "subo", "Scope", "im", "own", "sa", "fs",
)  # fmt: skip
GLOBALS = "__tc_gl__"


def is_globals(obj: Any) -> bool:
    """Whether ``obj`` is a rewritten module's globals (its variables' scope)."""
    return type(obj) is dict and obj.get(GLOBALS) is obj


def helper(name: str) -> str:
    return f"__tc_{name}__"


rewriting: set[int] = set()
"""The threads compiling a module now (SQLAlchemy's compiler takes seconds):
the scheduler's watchdog does not count that as a thread blocked."""


def compile_user(
    source: str | bytes,
    filename: str,
    first: Callable[[ast.Module], None] = lambda tree: None,
    embedded: bool = False,
    flags: int = 0,
) -> CodeType:
    """``source`` compiled with its accesses recorded (after ``first`` rewrote it:
    pytest's assertions, for a test module). ``embedded``: text the program
    runs with ``exec``, which finds the helpers among the builtins (see
    :mod:`~threadcheck._races._texts`): no preamble, no name of ours bound.
    ``flags``: the ``from __future__`` features it inherits."""
    me = get_ident()
    if me in rewriting:  # a module imported while another compiles (a pytest plugin)
        return _compile_user(source, filename, first, embedded, flags)
    rewriting.add(me)
    try:
        return _compile_user(source, filename, first, embedded, flags)
    finally:
        rewriting.discard(me)


def _compile_user(
    source: str | bytes,
    filename: str,
    first: Callable[[ast.Module], None],
    embedded: bool,
    flags: int,
) -> CodeType:
    tree = ast.parse(source, filename)
    first(tree)
    try:
        rewrite(tree, filename, embedded)
        code: CodeType = compile(tree, filename, "exec", flags, dont_inherit=True)
    except RecursionError:  # a generated expression too deep to rewrite: as written
        tree = ast.parse(source, filename)
        first(tree)
        plain: CodeType = compile(tree, filename, "exec", flags, dont_inherit=True)
        return plain
    _footprint.compiled(code)
    return code


def rewrite(tree: ast.Module, filename: str, embedded: bool = False) -> None:
    shared = {
        name for node in ast.walk(tree) if isinstance(node, ast.Global) for name in node.names
    }
    shared |= _module_variables(tree, lambda: _set_nearby(filename))
    _Rewriter(filename, shared, _closure_owners(tree)).visit(tree)
    if embedded:
        _GlobalsCalled().visit(tree)
        _end_where_they_start(tree)
        ast.fix_missing_locations(tree)
        return
    if tree.body:  # its import ends: what it did happens before another's import of it
        done = ast.parse(f"{helper('im')}({GLOBALS})").body[0]
        tree.body.append(ast.copy_location(done, tree.body[-1]))
    tree.body[_after_docstring_and_future(tree) : 0] = _preamble()
    _end_where_they_start(tree)
    ast.fix_missing_locations(tree)


def _end_where_they_start(tree: ast.AST) -> None:
    """Nodes another rewriter made with a start and no end (pytest's imports):
    ``fix_missing_locations`` would end them on their parent's first line,
    before they start, which ``compile`` refuses."""
    for node in ast.walk(tree):
        lineno = getattr(node, "lineno", None)
        if lineno is not None and getattr(node, "end_lineno", None) is None:
            node.end_lineno = lineno  # type: ignore[attr-defined]
            if getattr(node, "end_col_offset", None) is None:
                node.end_col_offset = getattr(node, "col_offset", 0)  # type: ignore[attr-defined]


class _GlobalsCalled(ast.NodeTransformer):
    """The module's globals asked for where they are used, not bound once."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id != GLOBALS:
            return node
        return ast.copy_location(ast.Call(ast.Name(helper("gns"), ast.Load()), [], []), node)


def _preamble() -> list[ast.stmt]:
    names = ", ".join(f"{name} as {helper(name)}" for name in HELPERS)
    return ast.parse(
        f"from threadcheck._races._access import {names}\n{GLOBALS} = globals()\n"
    ).body


def _after_docstring_and_future(tree: ast.Module) -> int:
    index = 0
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        index = 1
    while (
        index < len(body)
        and isinstance(body[index], ast.ImportFrom)
        and body[index].module == "__future__"  # type: ignore[attr-defined]
    ):
        index += 1
    return index


# -- which names are which -----------------------------------------------------

_Function = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_Scoped = (*_Function, ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass
class _Frame:
    node: ast.AST | None
    """The function, class or comprehension (None: the module)."""
    bound: set[str] = field(default_factory=set)
    globals: set[str] = field(default_factory=set)
    nonlocals: set[str] = field(default_factory=set)
    cells: dict[str, str] = field(default_factory=dict)
    """Its variables some inner function assigns (``nonlocal``), with the
    name of the local that holds their scope."""
    stored_at: dict[str, list[int]] = field(default_factory=dict)
    """The lines where it assigns (or updates in place) each of its variables."""

    @property
    def is_class(self) -> bool:
        return isinstance(self.node, ast.ClassDef)


def _frame_of(node: ast.AST | None) -> _Frame:
    frame = _Frame(node)
    if node is None:
        return frame
    if isinstance(node, _Function):
        args = node.args
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                frame.bound.add(arg.arg)
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        for generator in node.generators:
            frame.bound.update(_stored_names(generator.target))
        return frame
    body = getattr(node, "body", [])
    body = body if isinstance(body, list) else [body]
    for child in _own_nodes(body):
        if isinstance(child, ast.Global):
            frame.globals.update(child.names)
        elif isinstance(child, ast.Nonlocal):
            frame.nonlocals.update(child.names)
        elif isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            frame.bound.add(child.id)
            frame.stored_at.setdefault(child.id, []).append(child.lineno)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            frame.bound.add(child.name)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            frame.bound.update((a.asname or a.name).split(".")[0] for a in child.names)
        elif isinstance(child, ast.ExceptHandler) and child.name:
            frame.bound.add(child.name)
    frame.bound -= frame.globals | frame.nonlocals
    return frame


def _own_nodes(body: list[ast.stmt] | list[ast.expr]) -> Iterator[ast.AST]:
    """The nodes of a scope's body, not those of scopes nested in it (their
    names, decorators and defaults excepted: those belong here)."""
    todo: list[ast.AST] = list(body)
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, _Scoped):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                todo.extend(node.decorator_list)
            if isinstance(node, _Function):
                todo.extend(d for d in (*node.args.defaults, *node.args.kw_defaults) if d)
            if isinstance(node, ast.ClassDef):
                todo.extend((*node.bases, *node.keywords))
            continue
        todo.extend(ast.iter_child_nodes(node))


def _stored_names(target: ast.AST) -> set[str]:
    return {
        n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def _module_variables(
    tree: ast.Module, set_elsewhere: Callable[[], frozenset[str]] = frozenset
) -> set[str]:
    """The names the module's own code assigns, not as a ``def``, a class or an
    import, nor once, a number or a string (``TIMEOUT = 30``: a constant, read
    in hot loops) that no code nearby sets (``set_elsewhere()``:
    ``flags.MODE = 1``): its variables, which a function may read while another
    module's code sets them (``settings.MAINTENANCE = True``), no ``global``
    declared."""
    assigned: set[str] = set()
    defined: set[str] = set()
    constant: dict[str, bool] = {}  # assigned once so far, a literal
    for node in _own_nodes(tree.body):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            literal = not isinstance(node, ast.AugAssign) and _is_constant(node.value)
            for target in targets:
                for name in _stored_names(target):
                    constant[name] = name not in constant and literal
    constants = {n for n, only in constant.items() if only}
    if constants:  # the folders are read only for a module that has some
        elsewhere = set_elsewhere()
        constants = set() if ANY_NAME in elsewhere else constants - elsewhere
    variables = assigned - defined - constants
    return {n for n in variables if not (n.startswith("__") and n.endswith("__"))}


_SET_ELSEWHERE = re.compile(
    # x.NAME = ..., x.NAME += ..., x.NAME, y.OTHER = ... (not consumed: OTHER's turn next)
    # and in brackets or annotated: (x.NAME, y.OTHER) = ..., x.NAME: int = ...
    # (bounded: a generated module's 80 KB line took 16 s to scan).
    r"""\.[ \t]*([A-Za-z_]\w*)(?=[ \t]*[)\]]*[ \t]*(?::[^=\n]{0,200})?(?:,[^=\n]{0,300})?"""
    r"""(?:[-+*/%&|^@]|//|\*\*|<<|>>)?=(?!=))"""
    # "NAME", "pkg.mod.NAME": setattr, mock.patch(.object), monkeypatch.setattr's
    # string form, globals()["NAME"], vars(mod)["NAME"], __dict__.update({"NAME": ...})
    r"""|["'](?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)["']"""
    # exec("NAME = 1"), and __dict__.update(NAME=1)
    r"""|["'][^"'\n]*?\b([A-Za-z_]\w*)\s*=(?!=)"""
    r"""|\.update\(\s*([A-Za-z_]\w*)\s*=(?!=)"""
)
"""The ways code sets a module's name from outside its own top level. Generous:
a name taken for set that is not only costs its reads their points."""
_TARGET = r"""((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:\[[^\]\n]{1,80}\])?)"""
"""An object written to: ``settings``, ``svc.config``, ``sys.modules[__name__]``."""
_SET_COMPUTED = (
    # setattr(settings, key.upper(), value): a name computed at run time
    ("setattr(", re.compile(r"""setattr\(\s*""" + _TARGET + r"""\s*,\s*(?!["'\s])""")),
    # vars(settings).update(overrides), vars(settings)[key] = value
    (
        "vars(",
        re.compile(r"""vars\(\s*""" + _TARGET + r"""\s*\)\s*(?:\.update\(|\[\s*(?!["']))"""),
    ),
    # globals().update(overrides), globals()[key] = value, vars() too: this module's
    ("globals(", re.compile(r"""globals\(()\s*\)\s*(?:\.update\(|\[\s*(?!["']))""")),
    ("vars(", re.compile(r"""vars\(()\s*\)\s*(?:\.update\(|\[\s*(?!["']))""")),
)
_DICT_SET = re.compile(r"""\.__dict__\s*(?:\.update\(|\[\s*(?!["']))""")
_TARGET_BEFORE = re.compile(_TARGET + r"\Z")
_MODULE_ENTRY = re.compile(r"""sys\.modules\[\s*(?:__name__|["'](?:[\w.]*\.)?(\w+)["'])\s*\]""")


def _set_computed(text: str, module: str) -> Iterator[str]:
    """The objects ``text`` (module ``module``'s) sets names of, computed at run
    time (``setattr(settings, key.upper(), value)``, ``vars(settings).update(...)``,
    ``settings.__dict__[key] = value``, ``globals()[key] = value``): when one has
    a module's name, or is known by another (an alias, ``sys.modules[...]``), none of
    that module's names is a constant. Found from each call's text (a pattern
    run over whole files cost 0.9 s on a virtualenv's 30 MB, which a 0.5 s
    ``--time`` could not spare)."""
    for call, pattern in _SET_COMPUTED:
        at = text.find(call)
        while at >= 0:
            found = pattern.match(text, at)
            if found is not None and (
                at == 0 or not (text[at - 1].isalnum() or text[at - 1] == "_")
            ):
                yield from _modules_named(found.group(1), text, module)
            at = text.find(call, at + 1)
    at = text.find(".__dict__")
    while at >= 0:
        if _DICT_SET.match(text, at):
            named = _TARGET_BEFORE.search(text, max(0, at - 120), at)
            if named is not None:
                yield from _modules_named(named.group(1), text, module)
        at = text.find(".__dict__", at + 1)


def _modules_named(target: str, text: str, module: str) -> Iterator[str]:
    """The modules ``target`` (an expression in ``text``, module ``module``'s)
    may be: its last name and what that name was imported as (``from svc import
    config as settings``, ``mod = importlib.import_module("svc.config")``), or
    the module ``sys.modules[...]`` names; ``""``: ``module`` itself."""
    if not target:
        yield module
        return
    entry = _MODULE_ENTRY.fullmatch(target)
    if entry is not None:
        yield entry.group(1) or module
        return
    name = target.rpartition(".")[2].partition("[")[0]
    yield name
    aliased = re.compile(
        rf"""\b([A-Za-z_]\w*)\s+as\s+{name}\b"""
        rf"""|\b{name}\s*=\s*(?:importlib\.)?(?:import_module|__import__)\(\s*["'](?:[\w.]*\.)?(\w+)["']"""
    )
    for found in aliased.finditer(text):
        yield found.group(1) or found.group(2)


ANY_NAME = "*"
"""In :func:`_set_nearby`'s names: every name of the module may be set."""
_NEARBY_FILES = 2000
"""Files read, at most, under each folder searched."""
_NEARBY_FOLDERS = 1000
"""Folders listed, at most, under each folder searched: a program started in
/tmp or a home folder would have tens of thousands walked (4.5 s from a /tmp
of 27,000 folders) for a few Python files. A count, not a time: the names
found decide what is rewritten, which a replay in another process must repeat."""
_SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages"})
_set_in: dict[tuple[str, bool], frozenset[str]] = {}


def _set_nearby(filename: str) -> frozenset[str]:
    """The names that code near ``filename`` sets from outside a module's top
    level: a module global of that name is no constant, whatever its first
    value (``MODE = 0``, then ``flags.MODE = 1`` from the program's main
    module). Near: the module's folder, and, with their subfolders, the folder
    its top-level package is in and the one the program started in."""
    folder = os.path.dirname(os.path.abspath(filename))
    trees = {_package_root(folder)}
    if _stacks.STARTED_IN is not None:
        trees.add(_stacks.STARTED_IN)
    # An installed package's (the bundled examples): not every other one beside it.
    trees = {tree for tree in trees if os.path.basename(tree) not in _SKIPPED_FOLDERS}
    found = _set_in_folder(folder, recursive=False)
    found = found.union(*(_set_in_folder(tree, recursive=True) for tree in trees))
    return found | {ANY_NAME} if ANY_NAME + _module_of(filename) in found else found


def _module_of(filename: str) -> str:
    """The last part of the name of the module ``filename`` holds."""
    name = os.path.splitext(os.path.basename(filename))[0]
    if name == "__init__":
        return os.path.basename(os.path.dirname(os.path.abspath(filename)))
    return name


def _package_root(folder: str) -> str:
    """The folder that holds ``folder``'s top-level package (``folder`` itself
    when it is no package): where the program's other modules are."""
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def _set_in_folder(folder: str, recursive: bool) -> frozenset[str]:
    found = _set_in.get((folder, recursive))
    if found is None:
        names: set[str] = set()
        for path in _python_files(folder, recursive):
            try:
                with open(path, encoding="utf-8", errors="replace") as file:
                    text = file.read()
            except OSError:
                continue
            names.update(next(n for n in groups if n) for groups in _SET_ELSEWHERE.findall(text))
            module = _module_of(path)
            names.update(ANY_NAME + name for name in _set_computed(text, module))
        found = _set_in[folder, recursive] = frozenset(names)
    return found


def _python_files(folder: str, recursive: bool) -> list[str]:
    """Up to :data:`_NEARBY_FILES` ``.py`` files in ``folder`` (and its
    subfolders, up to :data:`_NEARBY_FOLDERS`: not hidden ones, caches or
    virtualenvs)."""
    files: list[str] = []
    for listed, (root, folders, names) in enumerate(os.walk(folder), 1):
        files += (os.path.join(root, n) for n in sorted(names) if n.endswith(".py"))
        if not recursive or len(files) >= _NEARBY_FILES or listed >= _NEARBY_FOLDERS:
            break
        folders[:] = sorted(
            f
            for f in folders
            if not f.startswith(".")
            and f not in _SKIPPED_FOLDERS
            and not os.path.exists(os.path.join(root, f, "pyvenv.cfg"))
        )
    return files[:_NEARBY_FILES]


_CONSTANT_TYPES = (int, float, complex, str, bytes)


def _is_constant(value: ast.expr | None) -> bool:
    """A number, a string, or a tuple of them (not a bool or None: a flag, a
    lazily made singleton, which another thread sets)."""
    if isinstance(value, ast.Constant):
        return type(value.value) in _CONSTANT_TYPES
    if isinstance(value, ast.Tuple):
        return all(_is_constant(item) for item in value.elts)
    if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub):
        return _is_constant(value.operand)
    return False


def _closure_owners(tree: ast.Module) -> dict[ast.AST, set[str]]:
    """For each function, its variables that an inner function declares
    ``nonlocal``, or reads while the function assigns them again after that
    inner function (``state = "ready"`` after starting a thread whose handler
    reads ``state``), or again in a loop around it (``for job in jobs:
    Thread(target=lambda: run(job))``: each round rebinds ``job``). Not a list,
    set or dict comprehension's reads: it runs where it is (a generator
    expression runs when it is consumed, maybe in another thread)."""
    owners: dict[ast.AST, set[str]] = {}

    def walk(node: ast.AST, stack: list[_Frame], loops: list[ast.AST]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _Scoped):
                frame = _frame_of(child)
                lazy = isinstance(child, (*_Function, ast.GeneratorExp))
                readers = _loaded(child) - frame.bound if lazy else set()
                for name in frame.nonlocals | readers:
                    owner = _owner(name, stack)
                    if owner is None or owner.node is None:
                        continue
                    stored = owner.stored_at.get(name, ())
                    later = any(line > child.lineno for line in stored) or any(
                        loop.lineno <= line <= (loop.end_lineno or loop.lineno)  # type: ignore[attr-defined]
                        for loop in loops
                        for line in stored
                    )
                    if name in frame.nonlocals or later:
                        owners.setdefault(owner.node, set()).add(name)
                walk(child, [*stack, frame], [])
            elif isinstance(child, (ast.For, ast.AsyncFor, ast.While)):
                walk(child, stack, [*loops, child])
            else:
                walk(child, stack, loops)

    walk(tree, [_frame_of(None)], [])
    return owners


def _loaded(scope: ast.AST) -> set[str]:
    """The names ``scope``'s own code reads."""
    body = getattr(scope, "body", [])
    body = body if isinstance(body, list) else [body]
    if isinstance(scope, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        body = list(ast.iter_child_nodes(scope))
    return {
        n.id for n in _own_nodes(body) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def _owner(name: str, stack: list[_Frame]) -> _Frame | None:
    """The function whose local ``name`` is, seen from the innermost frame's parent."""
    for frame in reversed(stack):
        if frame.is_class or frame.node is None:
            continue
        if name in frame.bound:
            return frame
    return None


# -- the rewriting -------------------------------------------------------------


class _Rewriter(ast.NodeTransformer):
    def __init__(self, filename: str, shared: set[str], owners: dict[ast.AST, set[str]]) -> None:
        self.filename = filename
        self.shared = shared
        self.owners = owners
        self.stack: list[_Frame] = [_frame_of(None)]
        self.functions: list[str] = ["<module>"]
        self.scopes = 0
        self.generators: list[bool] = [False]
        """Whether each function being rewritten, innermost last, is a generator."""

    # Sites and helper calls.

    def _site(self, node: ast.AST, kind: str, text: str) -> ast.Constant:
        site = Site(self.filename, getattr(node, "lineno", 0), self.functions[-1], kind, text)
        return ast.Constant(add_site(site))

    def _local(self, name: str) -> bool:
        """Whether ``name`` is a plain local of the function being rewritten."""
        frame = self.stack[-1]
        return (
            frame.node is not None
            and not frame.is_class
            and name in frame.bound
            and name not in frame.globals | frame.nonlocals
            and name not in frame.cells
        )

    def _call(self, name: str, *args: ast.expr) -> ast.Call:
        return ast.Call(ast.Name(helper(name), ast.Load()), list(args), [])

    # Scopes.

    def _enter(self, node: ast.AST, name: str) -> _Frame:
        frame = _frame_of(node)
        for variable in sorted(self.owners.get(node, ())):
            self.scopes += 1
            frame.cells[variable] = f"__tc_s{self.scopes}__"
        self.stack.append(frame)
        self.functions.append(name)
        return frame

    def _leave(self) -> None:
        self.stack.pop()
        self.functions.pop()

    def _variable(self, name: str) -> ast.expr | None:
        """The scope standing for ``name`` here, if it is shared state."""
        inner = True
        for frame in reversed(self.stack):
            if frame.is_class and not inner:
                continue  # a class body's names are not visible to its methods
            inner = False
            if frame.node is None:
                break
            if name in frame.globals:
                break
            if name in frame.nonlocals:
                continue
            if name in frame.bound:
                holder = frame.cells.get(name)
                return None if holder is None else ast.Name(holder, ast.Load())
        if name in self.shared:
            return ast.Name(GLOBALS, ast.Load())
        return None

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        decorators: list[ast.expr] = []
        for decorator in node.decorator_list:
            if not _is_plain(decorator):
                # Above it, so wrapping what it makes if it is an lru_cache under
                # any name (checked once, as the function is made): the cache's
                # look and fill are C's.
                site = self._site(node, "method", f"{node.name}()")
                # At the decorator's line: the first decorator's is the code's
                # first line, by which an in-place rewrite finds its new code.
                decorators.append(ast.copy_location(self._call("cached", site), decorator))
            decorators.append(self.visit(decorator))
        node.decorator_list = decorators
        self._defaults(node.args)
        frame = self._enter(node, node.name)
        generator = isinstance(node, ast.FunctionDef) and any(
            isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(node.body)
        )
        self.generators.append(generator)
        node.body = self._body(node.body)
        self.generators.pop()
        if generator:  # falling off its end: it stops running, as at a return
            end = ast.Expr(self._call("gy", ast.Constant(None)))
            node.body.append(ast.copy_location(end, node.body[-1]))
        made = [
            ast.parse(f"{holder} = {helper('Scope')}({name!r})").body[0]
            for name, holder in frame.cells.items()
        ]
        self._leave()
        start = 1 if _is_docstring(node.body[0]) else 0
        node.body[start:start] = made
        return node

    def _defaults(self, args: ast.arguments) -> None:
        args.defaults = [self.visit(d) for d in args.defaults]
        args.kw_defaults = [self.visit(d) if d is not None else None for d in args.kw_defaults]

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for statement in body:
            result = self.visit(statement)
            out.extend(result if isinstance(result, list) else [result])
        return out

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST | list[ast.stmt]:
        return self._defined(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST | list[ast.stmt]:
        return self._defined(node)

    def _defined(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST | list[ast.stmt]:
        """The function made, then its name's write if that is shared state
        (`global handler` then `def handler`)."""
        written = self._bound([(node.name, node)])
        made = self._function(node)
        return [made, *written] if written else made  # type: ignore[list-item]

    # A generator stops running where it yields or returns (see ``_access.gy``).

    def visit_Yield(self, node: ast.Yield) -> ast.AST:
        value = self.visit(node.value) if node.value is not None else ast.Constant(None)
        node.value = self._call("gy", value)
        return node

    def visit_YieldFrom(self, node: ast.YieldFrom) -> ast.AST:
        node.value = self._call("gy", self.visit(node.value))
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        if self.generators[-1]:
            node.value = self._call("gy", node.value or ast.Constant(None))
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self._defaults(node.args)
        self._enter(node, "<lambda>")
        node.body = self.visit(node.body)
        self._leave()
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST | list[ast.stmt]:
        written = self._bound([(node.name, node)])
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.bases = [self.visit(b) for b in node.bases]
        node.keywords = [self.visit(k) for k in node.keywords]
        self._enter(node, node.name)
        node.body = self._body(node.body)
        self._leave()
        return [node, *written] if written else node

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> ast.AST:
        first = node.generators[0]
        first.iter = self.visit(first.iter)
        if not first.is_async:  # `async for`'s iterable is no loop's: its awaits switch
            first.iter = self._stepped(self._iterated(first.iter), node)
        self._enter(node, self.functions[-1])  # shown as the function it is written in
        for index, generator in enumerate(node.generators):
            if index:
                generator.iter = self.visit(generator.iter)
                if not generator.is_async:
                    generator.iter = self._stepped(generator.iter, node)
            generator.ifs = [self.visit(i) for i in generator.ifs]
        if isinstance(node, ast.DictComp):
            node.key = self.visit(node.key)
            node.value = self.visit(node.value)
        else:
            node.elt = self.visit(node.elt)
        self._leave()
        return node

    def visit_ListComp(self, node: ast.ListComp) -> ast.AST:
        return self._comprehension(node)

    def visit_SetComp(self, node: ast.SetComp) -> ast.AST:
        return self._comprehension(node)

    def visit_DictComp(self, node: ast.DictComp) -> ast.AST:
        return self._comprehension(node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> ast.AST:
        return self._comprehension(node)

    # Not evaluated as written: left alone.

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | list[ast.stmt]:
        if node.value is None:
            return node
        node.value = self.visit(node.value)
        if isinstance(node.target, ast.Name):
            stored = self._stored([node.target], "wv")
            node.value = self._stored_value(node.value, stored)
            return [node, *stored]
        node.target = self.visit(node.target)
        return node

    def visit_match_case(self, node: ast.match_case) -> ast.AST:
        captured = [
            (name, at)
            for at in ast.walk(node.pattern)
            for name in (getattr(at, "name", None), getattr(at, "rest", None))
            if isinstance(name, str)
        ]
        written = self._bound(captured)  # `case ("set", mode)` binds mode
        if node.guard is not None:
            node.guard = self.visit(node.guard)
        node.body = [*written, *self._body(node.body)]
        return node

    # Accesses.

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        node.value = self.visit(node.value)
        which = "ra" if isinstance(node.ctx, ast.Load) else "wa"
        text = _text(node)
        node.value = self._call(
            which, node.value, ast.Constant(node.attr), self._site(node, "attribute", text)
        )
        if which == "ra" and node.attr in _TAKEN:  # not called here: visit_Call has those
            return self._call("bm", node, self._site(node, "method", f"{text}()"))
        if which == "ra" and node.attr in _SETTERS:  # `setter = object.__setattr__`
            return self._call("sa", node, self._site(node, "attribute", f"{text}()"))
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _NAMESPACES and not node.args:
            return self._call("own", node)  # without the names the rewriting added
        compiling = _compiling(func)  # (before its callee is rewritten)
        named = _named_attribute(node)  # getattr(obj, name), setattr(obj, name, value)
        late = False
        if isinstance(func, ast.Attribute) and _assertion_helper(func.value):
            pass  # pytest's assertion rewriting (`@pytest_ar._saferepr(...)`): not the program's
        elif named and isinstance(func, ast.Attribute):
            func.value = self.visit(func.value)  # `object.__setattr__(stats, "n", v)`: as setattr
        elif isinstance(func, ast.Name) and func.id in _SETTING and named:
            pass  # `setattr(...)` called here: its access is the call's (not `sa`'s)
        elif isinstance(func, ast.Name) and func.id in _SETTING:
            # `setattr(settings, key.upper(), value)`: a name computed at run
            # time, not evaluated twice; the setter writes what it is given.
            node.func = self._call("sa", func, self._site(node, "attribute", _text(node)))
        elif isinstance(func, ast.Attribute) and func.attr in MUTATORS:
            # A plain name's mutator (`items.pop()`) is a scheduling point: a
            # look before it (`if items:`) and the call race; an item's too
            # (`batches[k].append(x)`: the batch may be swapped out after its
            # look-up). An attribute's (`self.items.pop()`) has the point of
            # that load before. With arguments that do something
            # (`items.append(items.pop() + 1)`), the change and its point come
            # after them, just before the call: another thread may act between.
            point = ast.Constant(isinstance(func.value, (ast.Name, ast.Subscript)))
            keyed = func.attr in _KEYED and node.args and not isinstance(node.args[0], ast.Starred)
            late = _do_something(node)  # then every key's change, as a whole (keyed or not)
            func.value = self.visit(func.value)
            site = self._site(node, "method", f"{_text(func)}()")
            if late:  # kept for cml, not evaluated again (a property, a `del` in the arguments)
                func.value = self._call("cms", func.value, site)
            else:
                func.value = self._call("cmk" if keyed else "cm", func.value, site, point)
        elif isinstance(func, ast.Attribute):
            site = self._site(node, "method", f"{_text(func)}()")
            keyed = func.attr == "get" and node.args and not isinstance(node.args[0], ast.Starred)
            func.value = self.visit(func.value)
            if keyed:  # the key's read is named as a subscript's: `cache[...]`
                key_site = self._site(node, "subscript", f"{_text(func.value)}[...]")
                func.value = self._call("ck", func.value, site, key_site)
            else:
                func.value = self._call("cr", func.value, site)
        else:
            node.func = self.visit(func)
        changing = not (isinstance(func, ast.Name) and func.id in _NOT_CHANGING | _SETTING)
        changing = changing and not (named and isinstance(func, ast.Attribute))
        handed_late = _handed_before_something(node) if changing else []
        node.args = [self.visit(a) for a in node.args]
        node.keywords = [self.visit(k) for k in node.keywords]
        if isinstance(func, ast.Name) and func.id == "print":
            self._printed_to(node)
        elif isinstance(func, ast.Name) and func.id == "next" and node.args:
            # A library's iterator (`itertools.count()`) advances: its own `__next__`.
            text = f"{_text(node.args[0])}.__next__()"
            node.args[0] = self._call("cr", node.args[0], self._site(node, "method", text))
        if isinstance(func, ast.Name) and func.id in _LOOKING:
            node.args = [
                a if isinstance(a, ast.Starred) else self._looked_into(a, node) for a in node.args
            ]
        elif changing:
            name = _name_of(func)
            # heapq's and bisect's: held while they call back; a write or a look.
            held_by = (
                ("oah", ast.Constant(name in _HOLDING_CHANGES)) if name in _HOLDING else ("oa",)
            )
            node.args = [self._handed_over(a, node, *held_by) for a in node.args]
            for keyword in node.keywords:
                named_as = "**" if keyword.arg is None else f"{keyword.arg}="
                keyword.value = self._handed_over(keyword.value, node, *held_by, named_as=named_as)
            held = sum(_calls_helper(a, "oah") for a in _arguments(node))
            if handed_late:
                # `heappush(pq, heappop(pq) + 1)`: handed over again, just before the call.
                site = self._site(node, "argument", f"{_text(node.func)}(...)")
                self._through_last(node, "oal", site, *handed_late)
            if held:  # outermost: the next call after it is the one they are handed to
                self._through_last(node, "oaw", ast.Constant(held))
        if named:
            self._named_access(node)
        if isinstance(func, ast.Attribute) and func.attr in MUTATORS and late:
            self._through_last(node, "cml", site)
        if compiling and node.args:
            plain = not node.keywords and not any(isinstance(a, ast.Starred) for a in node.args)
            if compiling in _RUNNING and plain:
                # Called from the user's frame, with the text's code: its traceback
                # and warnings' stack levels have no frame of ours.
                callee = compiling if isinstance(func, ast.Name) else f"builtins.{compiling}"
                again = ast.parse(callee, mode="eval").body  # looked up again
                args = self._call("code_args", again, *node.args)
                node.args = [ast.Starred(args, ast.Load())]
            else:  # what it compiles is rewritten too
                node.func = self._call("own_code", node.func)
        if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
            # `getattr(seen, op)(x)`: a container's method, fetched by name.
            text = f"{_text(node)}()"
            return self._call("bm", node, self._site(node, "method", text))
        if (node.args or node.keywords) and _works_on_files(func):
            # `if not os.path.exists(p): open(p, "x")`: a check, then an act on
            # what no object of the program holds. Last before the call: its point,
            # then the call, in one step.
            self._through_last(node, "fs", self._site(node, "method", f"{_text(func)}()"))
        return node

    def _printed_to(self, call: ast.Call) -> None:
        """``print(..., file=out)`` writes ``out``, as ``out.write(...)`` does: a
        library's object (a shared ``io.StringIO``) is written as a whole, at a
        point (two jobs' halves of a line interleave)."""
        for keyword in call.keywords:
            if keyword.arg == "file":
                text = f"{_text(keyword.value)}.write()"
                keyword.value = self._call("cr", keyword.value, self._site(call, "method", text))

    def _through_last(self, call: ast.Call, helper_name: str, *args: ast.expr) -> None:
        """The last of ``call``'s arguments to be evaluated hands its value through
        helper ``helper_name`` (with ``args``): just before the call, after the
        other arguments. Names in ``args`` are evaluated again, as written: the
        same objects, no access recorded twice."""
        last: ast.keyword | ast.Starred | None = None
        if call.keywords:  # evaluated after the positional arguments
            last = call.keywords[-1]
        elif isinstance(call.args[-1], ast.Starred):
            last = call.args[-1]
        if last is not None:
            last.value = self._call(helper_name, last.value, *args)
        else:
            call.args[-1] = self._call(helper_name, call.args[-1], *args)

    def _named_access(self, call: ast.Call) -> None:
        """``getattr(obj, name)`` reads ``obj.name`` as ``obj.name`` would, and
        ``setattr(obj, name, value)`` writes it, its point after ``value`` (a
        ``getattr`` in it and the store are a read-modify-write), as
        ``delattr(obj, name)`` does. ``obj`` and ``name`` are plain names or
        constants: evaluated again, they are the same."""
        site = self._site(call, "attribute", _text(call))
        func = call.func
        method = func if isinstance(func, ast.Attribute) else None
        bound = method is not None and len(call.args) == _BOUND_ARGUMENTS[method.attr]
        if method is not None and bound:
            # `stats.__setattr__("n", v)`: the object is the method's own.
            obj, name = copy.deepcopy(method.value), copy.deepcopy(call.args[0])
        else:
            obj, name = (copy.deepcopy(argument) for argument in call.args[:2])
        value_at = 1 if bound else 2
        function = _SETTING_METHODS[method.attr] if method is not None else _name_of(func)
        if function == "setattr":
            call.args[value_at] = self._call("sv", call.args[value_at], obj, name, site)
        elif function == "delattr" and method is not None and bound:
            method.value = self._call("wa", method.value, name, site)
        elif function == "delattr":
            call.args[0] = self._call("wa", call.args[0], name, site)
        else:
            call.args[0] = self._call("ra", call.args[0], name, site)

    def _handed_over(
        self,
        argument: ast.expr,
        call: ast.Call,
        helper_name: str,
        *more: ast.expr,
        named_as: str = "",
    ) -> ast.expr:
        """``argument`` (already visited), handed to a call that may change it;
        ``named_as``: its keyword (``target=``, ``**``), for the step's text."""
        if isinstance(argument, ast.Starred | ast.Constant | ast.Lambda | ast.JoinedStr):
            return argument
        text = f"{_text(call.func)}({named_as}{_text(argument)})"
        return self._call(helper_name, argument, self._site(call, "argument", text), *more)

    def _looked_into(self, container: ast.expr, node: ast.AST) -> ast.expr:
        """``container`` (already visited), looked into as a whole; a dict's view
        (``max(d.items(), key=...)``) looks into the dict."""
        calling_back = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _CALLING_BACK
        )
        text = f"look into {_text(container)}"
        if (
            isinstance(container, ast.Call)
            and isinstance(container.func, ast.Attribute)
            and container.func.attr in _VIEWS
            and not (container.args or container.keywords)
        ):
            if calling_back:  # the view, held by the call: lkc looks into its dict
                text = f"look into {_text(container.func.value)}"
                return self._call("lkc", container, self._site(node, "look", text))
            container.func.value = self._looked_into(container.func.value, node)
            return container
        return self._call(
            "lkc" if calling_back else "lk", container, self._site(node, "look", text)
        )

    # A container's truth is its size: ``if self.items:``, ``while not queue:``.

    def _truth(self, test: ast.expr) -> ast.expr:
        visited: ast.expr = self.visit(test)
        if isinstance(test, (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.Constant)):
            return visited  # a comparison's or an operator's result: its parts are wrapped
        return self._looked_into(visited, test)  # at the test's line: visiting may drop it

    def _tested(self, node: ast.If | ast.While) -> ast.AST:
        node.test = self._truth(node.test)
        node.body = self._body(node.body)
        node.orelse = self._body(node.orelse)
        return node

    def visit_If(self, node: ast.If) -> ast.AST:
        return self._tested(node)

    def visit_While(self, node: ast.While) -> ast.AST:
        self._tested(node)
        site = self._site(node, "loop", "loop")
        # At the loop's own line, as its back-edge is: not the body's last.
        node.body = _before_each_round(
            node.body, lambda: ast.copy_location(ast.Expr(self._call("lw", site)), node)
        )
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        node.test = self._truth(node.test)
        node.body = self.visit(node.body)
        node.orelse = self.visit(node.orelse)
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        node.values = [self._truth(value) for value in node.values]
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        node.operand = (
            self._truth(node.operand) if isinstance(node.op, ast.Not) else self.visit(node.operand)
        )
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        if len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            return self._membership(node)
        node.left = self.visit(node.left)
        looked_into = [isinstance(op, (ast.In, ast.NotIn)) for op in node.ops]
        node.comparators = [
            self._looked_into(self.visit(c), node) if into else self.visit(c)
            for into, c in zip(looked_into, node.comparators, strict=True)
        ]
        return node

    def _membership(self, node: ast.Compare) -> ast.expr:
        """``k in c``: ``__tc_isin__(k, c, site)``, a read of key ``k`` (see ``_access.isin``)."""
        container = node.comparators[0]
        site = self._site(node, "membership", f"membership in {_text(container)}")
        call = self._call("isin", self.visit(node.left), self.visit(container), site)
        if isinstance(node.ops[0], ast.NotIn):
            return ast.copy_location(ast.UnaryOp(ast.Not(), call), node)
        return ast.copy_location(call, node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        owner = _dict_owner(node.value)
        node.value = self.visit(node.value)
        node.slice = self.visit(node.slice)
        text = f"{_text(node.value)}[...]"
        site = self._site(node, "subscript", text)
        if owner is not None:  # self.__dict__[k], vars(self)[k]: self's attribute k
            node.value = self._call("subo", self.visit(owner), node.value, site)
        else:
            node.value = self._call("sub", node.value, site)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST | list[ast.stmt]:
        node.value = self.visit(node.value)
        target = node.target
        if (
            isinstance(node.op, _MERGING)
            and isinstance(target, ast.Name)
            and self._local(target.id)
        ):
            # `merged |= fresh`: a container changed in place. Its object read
            # again just before (a local: no access, no point of its own). Not
            # `+=`/`-=`: a counter's, in a hot loop, would pay a call a step.
            operator = _OPERATORS.get(type(node.op), "?")
            site = self._site(node, "method", f"{_text(target)} {operator}=")
            node.value = self._call("ip", node.value, _load_again(target), site)
        if isinstance(target, ast.Name):
            stored = self._stored([target], "uv")
            node.value = self._stored_value(node.value, stored)
            return [node, *stored]
        if isinstance(target, ast.Attribute):
            target.value = self.visit(target.value)
            site = self._site(target, "attribute", _text(target))
            target.value = self._call("ua", target.value, ast.Constant(target.attr), site)
            node.value = self._call("st", node.value, site)
            return node
        node.target = self.visit(target)
        if isinstance(target, ast.Subscript) and _is_helper_call(target.value, "sub"):
            target.value.func = ast.Name(helper("subu"), ast.Load())  # type: ignore[attr-defined]
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.AST | list[ast.stmt]:
        node.value = self.visit(node.value)
        if len(self.stack) == 1 and _made_by_a_made_callable(node.value):
            # `fetch = lru_cache(maxsize=None)(load)` in a module: maybe a cache.
            site = self._site(node, "method", f"{ast.unparse(node.targets[0])}()")
            node.value = ast.Call(self._call("cached", site), [node.value], [])
        if any(isinstance(t, (ast.Tuple, ast.List)) for t in node.targets):
            node.value = self._looked_into(node.value, node)  # `a, b = pair` reads it all
        names = [n for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        node.targets = [self.visit(t) for t in node.targets]
        stored = self._stored(names, "wv")
        node.value = self._stored_value(node.value, stored)
        return [node, *stored]

    def _stored_value(self, value: ast.expr, stored: list[ast.stmt]) -> ast.expr:
        """``value``, with the point of the first shared variable it is stored into."""
        if not stored:
            return value
        call = stored[0].value  # type: ignore[attr-defined]
        return self._call("st", value, call.args[2])

    def _stored(self, names: list[ast.Name], which: str) -> list[ast.stmt]:
        stored = [(n.id, n) for n in names if isinstance(n.ctx, ast.Store)]
        return self._bound(stored, which)

    def _bound(self, names: Sequence[tuple[str, ast.AST]], which: str = "wv") -> list[ast.stmt]:
        """The writes of the shared variables among ``names`` (each with the node
        that binds it: a target, an alias, a handler), once they are bound."""
        stored: list[ast.stmt] = []
        for name, at in names:
            scope = self._variable(name)
            if scope is not None:
                site = self._site(at, _kind(scope), f"{_kind(scope)} {name}")
                call = self._call(which, scope, ast.Constant(name), site)
                stored.append(ast.copy_location(ast.Expr(call), at))
        return stored

    # A shared variable bound otherwise than by `=` (a loop's target, `with ...
    # as`, `except ... as`, an import, `del`): written once it is bound.

    def _targets(self, target: ast.expr | None) -> list[tuple[str, ast.AST]]:
        if target is None:
            return []
        # Store names only: `for progress.current in ...` writes an attribute.
        return [
            (n.id, n)
            for n in ast.walk(target)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        ]

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
        node.iter = self.visit(node.iter)
        written = self._bound(self._targets(node.target))
        node.target = self.visit(node.target)
        node.body = [*written, *self._body(node.body)]
        node.orelse = self._body(node.orelse)
        return node

    def _with(self, node: ast.With | ast.AsyncWith) -> ast.AST:
        written: list[ast.stmt] = []
        for item in node.items:
            item.context_expr = self.visit(item.context_expr)
            written += self._bound(self._targets(item.optional_vars))
            if item.optional_vars is not None:
                item.optional_vars = self.visit(item.optional_vars)
        node.body = [*written, *self._body(node.body)]
        return node

    def visit_With(self, node: ast.With) -> ast.AST:
        return self._with(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> ast.AST:
        return self._with(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        if node.type is not None:
            node.type = self.visit(node.type)
        written = self._bound([(node.name, node)]) if node.name else []
        node.body = [*written, *self._body(node.body)]
        return node

    def visit_Delete(self, node: ast.Delete) -> list[ast.stmt]:
        names = [(t.id, t) for t in node.targets if isinstance(t, ast.Name)]
        node.targets = [self.visit(t) for t in node.targets]
        return [node, *self._bound(names)]

    def _imported(self, node: ast.Import | ast.ImportFrom) -> list[ast.stmt]:
        if len(self.stack) == 1:  # a module's own imports: not its variables
            return [node]
        names = [((a.asname or a.name).split(".")[0], node) for a in node.names]
        return [node, *self._bound([(n, at) for n, at in names if n != "*"])]

    def visit_Import(self, node: ast.Import) -> list[ast.stmt]:
        return self._imported(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> list[ast.stmt]:
        return self._imported(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> ast.AST:
        node.value = self.visit(node.value)
        scope = self._variable(node.target.id)
        if scope is None:
            return node
        name = node.target.id
        site = self._site(node.target, _kind(scope), f"{_kind(scope)} {name}")
        node.value = self._call("st", node.value, site)
        return self._call("wn", node, scope, ast.Constant(name), site)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if not isinstance(node.ctx, ast.Load):
            return node
        scope = self._variable(node.id)
        if scope is None and node.id in _SETTING:  # `functools.partial(setattr, stats, "n")`
            return self._call("sa", node, self._site(node, "attribute", f"{node.id}()"))
        if scope is None:
            return node
        site = self._site(node, _kind(scope), f"{_kind(scope)} {node.id}")
        return self._call("rv", scope, ast.Constant(node.id), site, node)

    def visit_For(self, node: ast.For) -> ast.AST:
        node.iter = self._stepped(self._iterated(self.visit(node.iter)), node)
        written = self._bound(self._targets(node.target))
        node.target = self.visit(node.target)
        node.body = [*written, *self._body(node.body)]
        node.orelse = self._body(node.orelse)
        return node

    def _iterated(self, iterable: ast.expr) -> ast.expr:
        if _is_helper_call(iterable, "bm"):  # `self.items`: an attribute named as a method
            return self._iterate(iterable, iterable)
        if _is_helper_call(iterable, "rv"):  # a shared variable's value: a container, maybe
            assert isinstance(iterable, ast.Call)
            return self._iterate(iterable, iterable.args[-1])  # the name, where it is
        if isinstance(iterable, ast.Call) and not iterable.keywords:
            func = iterable.func
            if isinstance(func, ast.Attribute) and func.attr in _VIEWS and not iterable.args:
                func.value = self._iterate(func.value, iterable)
                return iterable
            if isinstance(func, ast.Name) and func.id == "enumerate" and iterable.args:
                iterable.args[0] = self._iterate(iterable.args[0], iterable)
                return iterable
            return iterable  # range(), zip(): counting or building, not a shared container
        if isinstance(iterable, (ast.Tuple, ast.List, ast.Set, ast.Constant)):
            return iterable
        return self._iterate(iterable, iterable)

    def _stepped(self, iterable: ast.expr, node: ast.AST) -> ast.expr:
        """The iterable of a loop whose steps are points: not a ``range``'s (counting)."""
        if (
            isinstance(iterable, ast.Call)
            and isinstance(iterable.func, ast.Name)
            and iterable.func.id == "range"
        ):
            return iterable
        text = f"iteration of {_text(iterable)}"
        return self._call("lp", iterable, self._site(node, "loop", text))

    def _iterate(self, container: ast.expr, node: ast.expr) -> ast.expr:
        text = f"iteration over {_text(container)}"
        return self._call("it", container, self._site(node, "iteration", text))


def _before_each_round(body: list[ast.stmt], point: Callable[[], ast.stmt]) -> list[ast.stmt]:
    """A ``while`` loop's body with ``point()`` at its end and before each
    ``continue`` of its own (not those of loops or functions inside it)."""
    continues = _Continues(point)
    rounds: list[ast.stmt] = []
    for statement in body:
        visited = continues.visit(statement)
        rounds.extend(visited if isinstance(visited, list) else [visited])
    return [*rounds, point()]


class _Continues(ast.NodeTransformer):
    _INNER = (ast.For, ast.AsyncFor, ast.While, *_Scoped)
    """Where a ``continue`` belongs to another loop, or none."""

    def __init__(self, point: Callable[[], ast.stmt]) -> None:
        self.point = point

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Continue):
            return [self.point(), node]
        if isinstance(node, self._INNER):
            return node
        return self.generic_visit(node)


_SETTING = frozenset({"setattr", "delattr"})
"""Builtins that change what they are given, as an attribute store does."""
_SETTING_METHODS = {"__setattr__": "setattr", "__delattr__": "delattr"}
_SETTERS = frozenset(_SETTING_METHODS)
"""Attributes that write the attribute they name: called as ``setattr`` is."""
_BOUND_ARGUMENTS = {"__setattr__": 2, "__delattr__": 1}
"""Their arguments called bound (``stats.__setattr__("n", v)``); unbound
(``object.__setattr__(stats, "n", v)``), one more."""


def _dict_owner(value: ast.expr) -> ast.expr | None:
    """A copy of ``X`` when ``value`` is ``X.__dict__`` or ``vars(X)``, ``X`` a
    plain name (evaluated again, it is the same); else None."""
    if isinstance(value, ast.Attribute) and value.attr == "__dict__":
        owner = value.value
    elif (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "vars"
        and len(value.args) == 1
        and not value.keywords
    ):
        owner = value.args[0]
    else:
        return None
    return copy.deepcopy(owner) if isinstance(owner, ast.Name) else None


_PLAIN_DECORATORS = frozenset({"property", "staticmethod", "classmethod"})


def _compiling(func: ast.expr) -> str | None:
    """``exec``, ``eval`` or ``compile`` when ``func`` names that builtin
    (``exec`` or ``builtins.exec``)."""
    if isinstance(func, ast.Name) and func.id in _COMPILING:
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and func.attr in _COMPILING
        and isinstance(func.value, ast.Name)
        and func.value.id == "builtins"
    ):
        return func.attr
    return None


def _is_plain(decorator: ast.expr) -> bool:
    """``@property``, ``@staticmethod``, ``@classmethod``, ``@x.setter``: never
    a cache, so not wrapped (any other decorator may be an lru_cache, however
    it is named)."""
    if isinstance(decorator, ast.Attribute):
        return decorator.attr in ("setter", "getter", "deleter")
    return isinstance(decorator, ast.Name) and decorator.id in _PLAIN_DECORATORS


def _made_by_a_made_callable(value: ast.expr) -> bool:
    """``lru_cache(maxsize=None)(load)``: a call of what a call returned."""
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Call)


_DOING = (
    ast.Call, ast.Attribute, ast.Subscript, ast.Await, ast.Yield, ast.YieldFrom,
    ast.NamedExpr, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
)  # fmt: skip
"""What, in a call's arguments, may have a scheduling point of its own."""


def _does_something(argument: ast.AST) -> bool:
    """Whether evaluating ``argument`` may reach a point of its own (not constants,
    names and arithmetic on them), asked before it is visited."""
    return any(isinstance(n, _DOING) for n in ast.walk(argument))


def _do_something(call: ast.Call) -> bool:
    return any(_does_something(a) for a in _arguments(call))


def _arguments(call: ast.Call) -> list[ast.expr]:
    """``call``'s arguments, in the order they are evaluated."""
    return [*call.args, *(k.value for k in call.keywords)]


_OPERATORS = {ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^"}
"""The in-place operators that merge a dict or a set, by their node."""
_MERGING = (ast.BitOr, ast.BitAnd, ast.BitXor)


_FILE_MODULES = frozenset({"os", "os.path", "shutil", "glob", "tempfile", "io"})
"""Modules whose functions work on the file system, as programs name them."""


def _works_on_files(func: ast.expr) -> bool:
    """Whether the call of ``func`` opens or looks at files: ``open(...)``,
    ``os.path.exists(...)``, ``shutil.move(...)``."""
    if isinstance(func, ast.Name):
        return func.id == "open"
    return isinstance(func, ast.Attribute) and _text(func.value) in _FILE_MODULES


def _load_again(target: ast.Name) -> ast.expr:
    """A copy of ``target`` that loads it."""
    return ast.Name(target.id, ast.Load())


def _handed_before_something(call: ast.Call) -> list[ast.expr]:
    """Copies of the plain names ``call`` is handed before an argument that does
    something: what it hands over may have changed since. (Not an attribute:
    read again, a property would run twice.)"""
    arguments = [a.value if isinstance(a, ast.Starred) else a for a in _arguments(call)]
    doing = [at for at, argument in enumerate(arguments) if _does_something(argument)]
    before = arguments[: doing[-1]] if doing else []
    return [copy.deepcopy(a) for a in before if isinstance(a, ast.Name)]


def _name_of(func: ast.expr) -> str:
    """The name a call's function is known by: ``f`` of ``f(...)`` and of ``mod.f(...)``."""
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _calls_helper(argument: ast.expr, helper_name: str) -> bool:
    """Whether ``argument`` (rewritten) is a call of helper ``helper_name``."""
    func = argument.func if isinstance(argument, ast.Call) else None
    return isinstance(func, ast.Name) and func.id == helper(helper_name)


def _named_attribute(call: ast.Call) -> bool:
    """Whether ``call`` is ``getattr(obj, name[, default])``, ``hasattr(obj, name)``,
    ``setattr(obj, name, value)`` or ``delattr(obj, name)``, its ``obj`` and
    ``name`` plain names or constants (asked before the call is visited)."""
    func = call.func
    args = call.args
    if call.keywords or any(isinstance(a, ast.Starred) for a in args):
        return False
    if isinstance(func, ast.Attribute) and func.attr in _SETTERS:
        # `stats.__setattr__(name, v)`, or `object.__setattr__(stats, name, v)`
        bound = len(args) == _BOUND_ARGUMENTS[func.attr]
        if bound and not isinstance(func.value, ast.Name):  # `super().__setattr__`: the caller's
            return False
        if bound:
            return isinstance(args[0], ast.Name | ast.Constant)
        if len(args) != _BOUND_ARGUMENTS[func.attr] + 1:
            return False
    elif not (isinstance(func, ast.Name) and func.id in ("getattr", "hasattr", *_SETTING)):
        return False
    else:
        wanted = 3 if func.id == "setattr" else 2
        if len(args) < wanted:
            return False
    return isinstance(args[0], ast.Name) and isinstance(args[1], ast.Name | ast.Constant)


def _text(node: ast.AST) -> str:
    """``node`` as the user wrote it: the helpers already wrapped around its parts
    taken off (``__tc_ra__(self, "a", 3).b`` reads ``self.a.b``)."""
    dotted = _dotted(node)
    if dotted is not None:
        return dotted
    return ast.unparse(_Unwrapped().visit(copy.deepcopy(node)))


def _dotted(node: ast.AST) -> str | None:
    """A name or an attribute chain (``self.a.b``, most of what is named) as
    ``ast.unparse`` writes it, without its copy of the tree (a third of the
    time a test suite's modules took to rewrite); None for anything else."""
    node = _unwrapped(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _unwrapped(node: ast.AST) -> ast.AST:
    """``node`` without the helper calls wrapped around it."""
    while isinstance(node, ast.Call):
        func = node.func
        if not (isinstance(func, ast.Name) and func.id.startswith("__tc_") and node.args):
            break
        node = node.args[-1] if func.id == helper("rv") else node.args[0]
    return node


class _Unwrapped(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        unwrapped = _unwrapped(node)
        if unwrapped is not node:
            visited: ast.AST = self.visit(unwrapped)
            return visited
        return self.generic_visit(node)


def _is_helper_call(node: ast.expr, name: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == helper(name)
    )


def _assertion_helper(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id.startswith("@py")


def _kind(scope: ast.expr) -> str:
    return "global" if isinstance(scope, ast.Name) and scope.id == GLOBALS else "nonlocal"


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )
