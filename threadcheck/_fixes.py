"""The fix a report gives for a Twisted object used from the wrong thread.

Spelled with the names a Twisted user has for the object (``d``, ``transport``,
``request``) and the arguments the method takes, so the line can be pasted.
"""

from __future__ import annotations

import ast
import re

STUCK_AT_SHUTDOWN = (
    "make the job return at shutdown: give its blocking call a timeout, or have it "
    "check a flag that a 'before' 'shutdown' trigger sets"
)
"""For a pool worker that holds up shutdown (also told at once, by the reactor)."""

_OBJECT_NAMES = {
    "Deferred": "d",
    "DeferredQueue": "queue",
    "DeferredLock": "lock",
    "DeferredSemaphore": "semaphore",
    "transport": "transport",
    "port": "port",
    "connector": "connector",
    "process": "process",
    "request": "request",
    "LoopingCall": "loop",
    "Cooperator": "cooperator",
    "CooperativeTask": "task",
    "ReconnectingClientFactory": "factory",
}

_ARGUMENTS = {
    "callback": "result",
    "errback": "failure",
    "put": "item",
    "write": "data",
    "writeSequence": "data",
    "writeToChild": "fd, data",
    "registerProducer": "producer, streaming",
    "setHeader": "name, value",
    "addCookie": "name, value",
    "setResponseCode": "code",
    "redirect": "url",
    "setETag": "etag",
    "setLastModified": "when",
    "signalProcess": "signal",
    "closeChildFD": "fd",
    "start": "interval",
    "cooperate": "iterator",
    "coiterate": "iterator",
    "run": "f",
}

# These return a Deferred the calling thread wants the result of.
_WAITED_FOR = frozenset(
    {
        "DeferredQueue.get",
        "DeferredLock.acquire",
        "DeferredSemaphore.acquire",
        "Cooperator.coiterate",
    }
)


def object_name(api: str) -> str:
    """What a Twisted user calls the object ``api`` is a method of (``obj`` if unknown)."""
    return _OBJECT_NAMES.get(api.partition(".")[0], "obj")


def object_api_fix(api: str, offending: str = "") -> str | None:
    """The fix for ``api`` (``"transport.write"``), or None if it is not an object
    API; ``offending``: the source line of the call (asyncio's fixes quote it)."""
    kind, _, method = api.partition(".")
    if kind == "loop" and method:
        return _loop_fix(method, offending)
    if kind == "asyncio" and method.startswith("transport."):
        return _asyncio_transport_fix(method.partition(".")[2], offending)
    name = _OBJECT_NAMES.get(kind)
    if name is None or not method:
        return None
    if api == "request.notifyFinish":
        return (
            "call request.notifyFinish() in the reactor thread before handing the request "
            "to the thread; the worker then hands its writes over with reactor.callFromThread"
        )
    arguments = _ARGUMENTS.get(method, "")
    # The user's own call, handed over, can be pasted (`task.coiterate, rows()`).
    call = (
        call_written(offending, method)
        or handed_written(offending, method)
        or (f"{name}.{method}, {arguments}" if arguments else f"{name}.{method}")
    )
    if api in _WAITED_FOR:
        return f"wait for it from the thread: threads.blockingCallFromThread(reactor, {call})"
    return f"do it in the reactor thread: reactor.callFromThread({call})"


# A call on one of asyncio's loop-owned objects that reaches loop.call_soon:
# ``fut.set_result(value)``, ``done.set()``, ``task.cancel()``, ``q.put_nowait(x)``.
_HANDED_OVER = re.compile(
    r"(?P<obj>[\w.\[\]]+)\.(?P<method>set_result|set_exception|cancel|set|put_nowait"
    r"|call_soon)\("
)


def call_written(line: str, method: str | None = None) -> str | None:
    """The call on the user's ``line`` (the outermost, or that of ``method``) as
    ``callFromThread``'s arguments, written as the line writes them
    (``self.pending["req-1"].deferred.callback, b"x"``); None when there is
    none or the line is not a whole statement."""
    statement = line.strip()
    try:
        tree = ast.parse(statement)
    except SyntaxError:
        return None
    for node in ast.walk(tree):  # outermost first
        if isinstance(node, ast.Call) and (method is None or _calls(node, method)):
            parts = [node.func, *node.args, *node.keywords]
            return ", ".join(ast.get_source_segment(statement, p) or ast.unparse(p) for p in parts)
    return None


def handed_written(line: str, method: str) -> str | None:
    """``method`` handed over on the user's ``line`` with its arguments
    (``executor.submit(port.write, b"x", addr)``, ``Thread(target=d.callback,
    args=(1,))``) as ``callFromThread``'s arguments; None when it is not."""
    statement = line.strip()
    try:
        tree = ast.parse(statement)
    except SyntaxError:
        return None

    def written(node: ast.AST) -> str:
        return ast.get_source_segment(statement, node) or ast.unparse(node)

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for index, argument in enumerate(node.args):
            if _names(argument, method):  # submit(f, *args), callInThread(f, *args)
                return ", ".join(written(part) for part in node.args[index:])
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        target = keywords.get("target")
        if target is not None and _names(target, method):  # Thread(target=f, args=(...))
            handed = keywords.get("args")
            rest = handed.elts if isinstance(handed, ast.Tuple | ast.List) else []
            return ", ".join(written(part) for part in [target, *rest])
    return None


def _names(node: ast.AST, method: str) -> bool:
    """Whether ``node`` is the callable ``method`` itself, not a call of it."""
    return (isinstance(node, ast.Attribute) and node.attr == method) or (
        isinstance(node, ast.Name) and node.id == method
    )


def sole_call_written(line: str) -> str | None:
    """:func:`call_written`, for a ``line`` that makes one call only (a helper's
    ``f(*args)``): which call reached the library is then not in doubt."""
    try:
        calls = [n for n in ast.walk(ast.parse(line.strip())) if isinstance(n, ast.Call)]
    except SyntaxError:
        return None
    return call_written(line) if len(calls) == 1 else None


def result_kept(line: str, method: str) -> tuple[str | None, str] | None:
    """Whether the user's ``line`` goes on with what its call of ``method``
    returns: ``(targets, call as callFromThread's arguments)`` for an assignment
    (``watchdog = reactor.callLater(5, f)``), ``(None, the whole expression)``
    for a call chained on it (``reactor.resolve(h).addCallback(log)``); else None."""
    statement = line.strip()
    try:
        [node] = ast.parse(statement).body
    except (SyntaxError, ValueError):
        return None
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and _calls(node.value, method):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        written = call_written(statement, method)
        if written is None:
            return None
        return " = ".join(
            ast.get_source_segment(statement, t) or ast.unparse(t) for t in targets
        ), written
    # Chained: the call is what an attribute is taken of (`.addCallback`).
    if (
        isinstance(node, ast.Expr)
        and not _calls(node.value, method)
        and any(_calls(getattr(n, "value", None), method) for n in ast.walk(node.value))
    ):
        return None, ast.get_source_segment(statement, node.value) or ast.unparse(node.value)
    return None


def _calls(node: ast.AST | None, method: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == method
    )


def _loop_fix(method: str, offending: str) -> str:
    """asyncio's own hand-over: the loop is not the reactor, though it runs in its thread."""
    if method == "create_task":
        return (
            "hand the coroutine to the loop's thread: asyncio.run_coroutine_threadsafe(coro, loop)"
        )
    if method != "call_soon":
        return f"do it in the loop's thread: loop.call_soon_threadsafe(loop.{method}, ...)"
    handed = _called(_HANDED_OVER, offending)
    if handed is None:
        return (
            "hand it to the loop's thread: loop.call_soon_threadsafe(f, ...); asyncio's "
            "futures, events, queues and tasks are the loop's too: their set_result, set, "
            "put_nowait and cancel are handed over the same way"
        )
    if handed["method"] == "call_soon":
        args = handed["args"].strip()
        return f"hand it to the loop's thread: {handed['obj']}.call_soon_threadsafe({args})"
    return _handed_to_the_loop(handed)


# A worker's call of a method on an asyncio stream: ``writer.write(data)``.
_METHOD_CALL = re.compile(r"(?P<obj>[\w.\[\]]+)\.(?P<method>\w+)\(")


def _asyncio_transport_fix(method: str, offending: str) -> str:
    """The loop's hand-over of the call the worker made (a StreamWriter's
    ``write`` reaches its transport's), else of the transport's method."""
    called = _called(_METHOD_CALL, offending, method)
    if called is None:
        return f"hand it to the loop's thread: loop.call_soon_threadsafe(transport.{method}, ...)"
    return _handed_to_the_loop(called)


def _called(
    pattern: re.Pattern[str], line: str, method: str | None = None
) -> dict[str, str] | None:
    """The first call on ``line`` that ``pattern`` (up to its opening parenthesis)
    finds, of ``method`` if given: its ``obj``, ``method`` and ``args``, up to
    the parenthesis that closes it (``afut.set_result(f.result())`` inside a
    lambda's call keeps its own)."""
    for found in pattern.finditer(line):
        if method is not None and found["method"] != method:
            continue
        depth = 1
        for end in range(found.end(), len(line)):
            depth += {"(": 1, ")": -1}.get(line[end], 0)
            if depth == 0:
                args = line[found.end() : end]
                return {"obj": found["obj"], "method": found["method"], "args": args}
    return None


def _handed_to_the_loop(called: dict[str, str]) -> str:
    """The worker's call (``obj.method(args)`` on its line), handed to the loop's thread."""
    args = called["args"].strip()
    call = f"{called['obj']}.{called['method']}" + (f", {args}" if args else "")
    return f"hand it to the loop's thread: loop.call_soon_threadsafe({call})"


def race_hint(location: str, access: str, earlier: str, written_at: str = "") -> str:
    """The fix for a data race on ``location``, by the shape of its two accesses
    (``written_at``: the source line of its write, when one is)."""
    name = location.removeprefix("nonlocal ")
    if name != location and written_at.lstrip().startswith(("for ", "async for ")):
        # Late binding: a lock would order the reads, not give each its round's value.
        return (
            f"each round of the loop rebinds {name}, which what it started reads later: "
            f"give it the round's value (lambda {name}={name}: ..., or pass {name} as an "
            f"argument: reactor.callFromThread(f, {name}))"
        )
    if "iteration" in (access, earlier):
        return (
            f"iterate over {location} and change it under one threading.Lock (or iterate "
            "over a copy made under it), or keep the iteration and every change in the "
            "reactor thread (from a worker: reactor.callFromThread(f, ...); a worker that "
            "walks it is handed a copy made there)"
        )
    if access == earlier == "update":
        return (
            f"an update of {location} reads, then writes: two at once lose one. Hold one "
            "threading.Lock around every access, or make them all in one thread (from a "
            "worker: reactor.callFromThread(f, ...))"
        )
    if "update" in (access, earlier):  # and a read: it may see the value half-way
        return (
            f"a read of {location} while another thread updates it sees either value, "
            "whichever runs first. Hold one threading.Lock around the update and the "
            "read, or make them in one thread (from a worker: reactor.callFromThread(f, ...))"
        )
    return (
        f"order the accesses to {location}: hold one threading.Lock around both, hand "
        "the value over (queue.Queue; from a worker, reactor.callFromThread(f, ...)), "
        "or keep the object in one thread"
    )
