"""Cheap stack capture, and folding of library frames when a stack is shown.

Capture stores ``(filename, lineno, function)`` triples only: no frame objects
are kept alive and no source is read until a report is formatted.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import linecache
import os
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import CodeType, FrameType, ModuleType
from typing import Any

MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Frame:
    filename: str
    lineno: int
    function: str

    @property
    def library(self) -> str | None:
        """Name of the library this frame belongs to, or None for user code."""
        return classify(self.filename)

    @property
    def source(self) -> str:
        return self.line_of_file(self.lineno).strip()

    def line_of_file(self, lineno: int) -> str:
        """Line ``lineno`` of this frame's file, as written ("" when unknown)."""
        line = linecache.getline(self.filename, lineno)
        if not line and STARTED_IN is not None and not os.path.isabs(self.filename):
            # Compiled from where the user started (`trial pkg/test_x.py`), read
            # after a chdir (trial's _trial_temp).
            line = linecache.getline(os.path.join(STARTED_IN, self.filename), lineno)
        return line

    def location(self) -> str:
        return f"{_shorten(self.filename)}:{self.lineno} in {self.function}"


Stack = tuple[Frame, ...]
"""Outermost frame first, as in a Python traceback."""


def _dir_of(module_file: str) -> str:
    return os.path.dirname(os.path.abspath(module_file)) + os.sep


def _package_dir(name: str) -> str | None:
    # Located, not imported: importing threadcheck (say, as a pytest plugin
    # that is switched off) must not import Twisted.
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or spec.submodule_search_locations is None:
        return None  # absent, or a single-file module whose folder is site-packages
    return _dir_of(spec.origin)


def _twisted_dir() -> str:
    folder = _package_dir("twisted")
    if folder is None:
        raise ImportError("threadcheck needs Twisted, which is not installed")
    return folder


# Test harnesses that run user code (pytest, pytest-twisted, crochet, ...)
# are never where the bug is: fold them too, under their own names.
_HARNESSES = {
    "_pytest": "pytest",
    "pytest": "pytest",
    "pluggy": "pluggy",
    "pytest_twisted": "pytest_twisted",
    "xdist": "xdist",
    "execnet": "execnet",
    "crochet": "crochet",
    "greenlet": "greenlet",
}


HARNESS_NAMES = frozenset(_HARNESSES.values())


# Frames under these folders are folded when a stack is shown. Order matters:
# site-packages can live under the stdlib folder, so the stdlib comes last.
_LIBRARY_DIRS: list[tuple[str, str]] = [
    (_dir_of(__file__), "threadcheck"),
    *((folder, "threadcheck") for folder in [_package_dir("threadcheck_reactor")] if folder),
    (_twisted_dir(), "twisted"),
    *((folder, shown) for name, shown in _HARNESSES.items() if (folder := _package_dir(name))),
]
_STDLIB_DIRS = tuple(
    os.path.abspath(p) + os.sep
    for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)
_SITE_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)


# Bundled example programs are user code even though they ship inside the package.
_EXAMPLES = _dir_of(__file__) + "examples" + os.sep
_USER_DIRS: tuple[str, ...] = (_EXAMPLES,)


_instrumentable: dict[str, bool] = {}
_library_modules: dict[int, object] = {}
"""Loaded modules that are not user code, by id (held, so the id stays theirs):
an exploration starts by scanning every loaded module (600 with a few
libraries: ~1 ms uncached)."""


def register_user_paths(prefixes: Sequence[str]) -> None:
    """Treat frames under ``prefixes`` as user code, library or not: what a run
    was asked to watch (``--include``) is where its reports lead."""
    global _USER_DIRS
    _USER_DIRS = (*_USER_DIRS, *(p for p in prefixes if p not in _USER_DIRS))
    _forget_classes()


def register_library(module_file: str, name: str) -> None:
    """Treat frames from the folder of ``module_file`` as library ``name``."""
    register_library_path(_dir_of(module_file), name)


def register_script(script: str, name: str) -> None:
    """The console script that started this process (``sys.argv[0]``) is
    library ``name``'s: as typed, made absolute, and as Python names its
    frames when run by a relative path (joined to the folder, not normalised:
    ``/home/me/app/../venv/bin/trial``)."""
    for path in {script, os.path.abspath(script), os.path.join(os.getcwd(), script)}:
        register_library_path(path, name)


def register_library_path(prefix: str, name: str) -> None:
    """Treat frames whose file name starts with ``prefix`` as library ``name``."""
    _LIBRARY_DIRS.insert(0, (prefix, name))
    _forget_classes()


def _forget_classes() -> None:
    _classes.clear()
    _instrumentable.clear()
    _library_modules.clear()


def classify(filename: str) -> str | None:
    """The library ``filename`` belongs to (an installed package under its
    top-level name: the user's line is the one that called into it), or None
    for user code."""
    known = _classes.get(filename, _UNKNOWN)
    if known is _UNKNOWN:
        known = _classes[filename] = _classify(filename)
    return known  # type: ignore[return-value]


_UNKNOWN = object()
_classes: dict[str, object] = {}


def _classify(filename: str) -> str | None:
    if filename.startswith(_USER_DIRS) and not is_own(filename):
        return None
    for prefix, name in _LIBRARY_DIRS:
        if filename.startswith(prefix):
            return name
    installed = _installed_package(filename)
    if installed is not None:
        return installed
    if filename.startswith(_STDLIB_DIRS):
        return "python"
    if filename.startswith("<frozen "):
        return "python"
    if filename.startswith("<decorator-gen-"):
        return "decorator"  # signature-preserving wrappers (pytest-twisted uses them)
    return _compiled_package(filename)


def _compiled_package(filename: str) -> str | None:
    """The installed package a compiled module's frame is of, its file name the
    relative one it was built from (Cython's: ``lib/sqlalchemy/engine/_result_cy.py``,
    counted as the user's own, and a failure's line put there): a folder of
    it names an imported installed package, and no such file is here."""
    if os.path.isabs(filename) or filename.startswith("<"):
        return None
    for folder in filename.replace(os.sep, "/").split("/")[:-1]:
        module = sys.modules.get(folder)
        path = getattr(module, "__file__", None) or ""
        if path and _installed_package(path) == folder:
            started = STARTED_IN or os.getcwd()
            return None if os.path.exists(os.path.join(started, filename)) else folder
    return None


def is_own(path: str) -> bool:
    """threadcheck's own code (its examples aside): never the user's, whatever
    ``--include`` names (a folder holding it, or threadcheck itself)."""
    return not path.startswith(_EXAMPLES) and any(
        path.startswith(prefix) for prefix, name in _LIBRARY_DIRS if name == "threadcheck"
    )


def installed_package_of(path: str) -> str | None:
    """The installed package ``path`` is in, if it is classified as one (not
    Twisted, threadcheck or a test harness, installed as they may be)."""
    if any(path.startswith(prefix) for prefix, _ in _LIBRARY_DIRS):
        return None  # threadcheck's own, Twisted's, a harness's: wherever installed
    return _installed_package(path)


def _installed_package(filename: str) -> str | None:
    """``autobahn`` for ``.../site-packages/autobahn/websocket/protocol.py``."""
    for marker in _SITE_MARKERS:
        at = filename.find(marker)
        if at >= 0:
            top = filename[at + len(marker) :].split(os.sep, 1)[0]
            return top.removesuffix(".py") or None
    return None


def is_user_code(filename: str) -> bool:
    """Code the scheduler instruments: neither a library (Twisted, threadcheck,
    the standard library, a test harness) nor an installed package."""
    known = _instrumentable.get(filename)
    if known is None:
        known = _instrumentable[filename] = classify(filename) is None and (
            filename.startswith(_USER_DIRS)
            or (
                not filename.startswith("<")
                and not any(marker in filename for marker in _SITE_MARKERS)
            )
        )
    return known


def is_user_module(module: object) -> bool:
    """Whether a loaded module is user code: :func:`is_user_code` of its file."""
    if id(module) in _library_modules:
        return False
    filename = getattr(module, "__file__", None)
    if isinstance(filename, str) and is_user_code(filename):
        return True
    _library_modules[id(module)] = module
    return False


def user_modules(is_user_file: Callable[[str], bool] = is_user_code) -> list[ModuleType]:
    """The loaded modules whose file is user code (by ``is_user_file``). Without
    ``--include``, a library's module is known by its identity from one call to
    the next: each exploration's start scans every loaded module (750 with a
    few libraries), and this is most of what it costs."""
    modules = list(sys.modules.values())
    if is_user_file is is_user_code:
        library = _library_modules
        return [
            module
            for module in modules
            if id(module) not in library
            and isinstance(module, ModuleType)
            and is_user_module(module)
        ]
    found = []
    for module in modules:
        if isinstance(module, ModuleType):
            filename = getattr(module, "__file__", None)
            if isinstance(filename, str) and is_user_file(filename):
                found.append(module)
    return found


def include_paths(names: Sequence[str]) -> tuple[str, ...]:
    """``--include``/``include=`` entries as absolute paths: each a file, a
    folder, or the name of an importable module or package (``"sqlalchemy"``).
    ValueError names the first that is none of these."""
    paths: list[str] = []
    for name in names:
        found = _include_locations(name)
        for path in found:
            if is_own(path + os.sep if os.path.isdir(path) else path):
                raise ValueError(f"{name} is threadcheck's own code, which is never watched")
        paths.extend(found)
    return tuple(dict.fromkeys(paths))


def _include_locations(name: str) -> list[str]:
    """The file or folder ``name``, and the module of that name where it is
    installed: both, since a project's source folder often sits in the working
    directory beside the installed copy the program imports (tox, a flat layout)."""
    found = [os.path.abspath(name)] if os.path.exists(name) else []
    try:
        return [*found, _module_location(name)]
    except ValueError:
        if found:
            return found
        raise


def _module_location(name: str) -> str:
    """Where the module ``name`` is imported from; ValueError if from no file."""
    spec = None
    if all(part.isidentifier() for part in name.split(".")):
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
    if spec is None:
        raise ValueError(f"no such file, folder or module: {name}")
    location = next(iter(spec.submodule_search_locations or ()), None) or spec.origin
    if location is None or not os.path.exists(location):
        raise ValueError(f"{name} is not a module in a file or folder")
    return os.path.abspath(location)


def user_code(include: Sequence[str]) -> Callable[[str], bool]:
    """:func:`is_user_code`, or under one of the ``include`` paths."""
    if not include:
        return is_user_code
    prefixes = tuple(os.path.abspath(path) for path in include)
    return lambda filename: (
        is_user_code(filename) or (filename.startswith(prefixes) and not is_own(filename))
    )


RawStack = tuple[Any, ...]
"""A stack as a flat tuple ``(code, instruction offset, code, offset, ...)``,
innermost first: cheap to take (one tuple), read later (the offset becomes a
line only then)."""

SUBMISSION_DEPTH = 3
"""Frames kept of the stack that submitted work to a thread pool: the innermost,
which hold the user's call (``deferToThread`` and ``reactor.callInThread`` both
reach the pool two frames below it). Taken on every submission, so kept short:
each frame read costs about 1% of a deferToThread round trip."""


def capture_raw(skip: int = 0, limit: int = MAX_DEPTH) -> RawStack:
    """Like :func:`capture`, for stacks that are only read if something goes
    wrong (where a thread was started, who submitted work): a fraction of the
    cost, since reading ``f_lineno`` means a line-table search per frame."""
    frame: FrameType | None = sys._getframe(skip + 1)
    frames: list[Any] = []
    for _ in range(limit):
        if frame is None:
            break
        frames += (frame.f_code, frame.f_lasti)
        frame = frame.f_back
    return tuple(frames)


def materialize(raw: RawStack) -> Stack:
    """The :class:`Frame` stack of a :func:`capture_raw` one, threadcheck's own frames dropped."""
    pairs = zip(raw[-2::-2], raw[::-2], strict=True)  # outermost first
    frames = tuple(
        Frame(code.co_filename, _line_at(code, offset), code.co_name) for code, offset in pairs
    )
    return intern(without_threadcheck(frames))


def _line_at(code: CodeType, offset: int) -> int:
    for start, end, line in code.co_lines():
        if start <= offset < end and line is not None:
            return line
    return code.co_firstlineno


def capture(skip: int = 0, limit: int = MAX_DEPTH) -> Stack:
    """The caller's stack, without the caller's own ``skip`` innermost frames.

    Keeps the innermost ``limit`` frames: those are the ones that made the call.
    """
    return stack_from(sys._getframe(skip + 1), limit)


def stack_from(frame: FrameType | None, limit: int = MAX_DEPTH) -> Stack:
    """The stack ending in ``frame`` (another thread's, say), outermost first."""
    frames: list[Frame] = []
    while frame is not None and len(frames) < limit:
        code = frame.f_code
        frames.append(Frame(code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    frames.reverse()
    return tuple(frames)


_interned: dict[Stack, Stack] = {}


def intern(stack: Stack) -> Stack:
    """One shared copy per distinct stack: a violation repeated a million times
    in a soak run then costs a small record each, not a stack each."""
    # dict.setdefault is thread-safe; a lost race only keeps one duplicate.
    return _interned.setdefault(stack, stack)


def without_threadcheck(stack: Stack) -> Stack:
    """Drop threadcheck's own innermost frames: they are the check, not the bug."""
    end = len(stack)
    while end > 0 and stack[end - 1].library == "threadcheck":
        end -= 1
    return stack[:end]


def innermost_user_frame(stack: Stack) -> Frame | None:
    for frame in reversed(stack):
        if frame.library is None:
            return frame
    return None


def where_it_waits(stack: Stack) -> Frame | None:
    """Where a thread that waits (a stalled reactor, a thread blocked for good)
    waits: its innermost frame of the program's, else of a library other than
    the standard library (APScheduler's loop on its event); None when every
    frame is Python's or threadcheck's."""
    return innermost_user_frame(stack) or next(
        (f for f in reversed(stack) if f.library not in ("python", "threadcheck")), None
    )


def format_stack(stack: Stack, indent: str = "    ") -> Iterator[str]:
    """Lines for ``stack``, most recent call last, library runs folded to one line."""
    for is_library, run in library_runs(stack):
        if is_library:
            libraries = ", ".join(dict.fromkeys(f.library or "" for f in run))
            noun = "frame" if len(run) == 1 else "frames"
            yield f"{indent}... {len(run)} {noun} in {libraries} ..."
            continue
        for frame in run:
            yield f"{indent}{frame.location()}"
            if frame.source:
                yield f"{indent}    {frame.source}"


def library_runs(stack: Iterable[Frame]) -> Iterator[tuple[bool, list[Frame]]]:
    """The stack in runs of user frames and of library frames, outermost first."""
    run: list[Frame] = []
    run_is_library = False
    for frame in stack:
        is_library = frame.library is not None
        if run and is_library != run_is_library:
            yield run_is_library, run
            run = []
        run_is_library = is_library
        run.append(frame)
    if run:
        yield run_is_library, run


def _started_in() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # removed under us: paths relative to wherever we are then
        return None


STARTED_IN = _started_in()
"""The directory the user started in. Reports name files relative to it, not
to one the program changed to (``os.chdir``, trial's ``_trial_temp``): the
user's shell is still here."""


def _shorten(filename: str) -> str:
    if STARTED_IN is not None:
        # A relative code filename was compiled from where the user started.
        filename = os.path.join(STARTED_IN, filename)
    try:
        relative = os.path.relpath(filename, STARTED_IN)
    except ValueError:  # another drive on Windows
        return filename
    return filename if relative.startswith(".." + os.sep + "..") else relative


def to_json(stack: Stack | None) -> list[dict[str, object]] | None:
    if stack is None:
        return None
    return [
        {
            "file": f.filename,
            "line": f.lineno,
            "function": f.function,
            "code": f.source,
            "library": f.library,
        }
        for f in stack
    ]


def current_frames() -> dict[int, FrameType]:
    """``sys._current_frames()`` with the garbage collector off meanwhile: a
    collection its allocations start may free a ``threading.local``, whose
    clean-up takes the thread-list lock the call holds, a deadlock of the whole
    process (CPython gh-106883, fixed in 3.11.9 and 3.12.3; a test suite hung on it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return sys._current_frames()
    finally:
        if enabled:
            gc.enable()
