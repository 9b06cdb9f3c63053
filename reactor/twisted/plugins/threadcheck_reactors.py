"""Makes ``--reactor=threadcheck`` available to trial and twistd."""

from twisted.application.reactors import Reactor

threadcheck = Reactor(
    "threadcheck",
    "threadcheck._twisted_plugin",
    "Default reactor with thread-affinity checks (threadcheck; THREADCHECK_MODE=raise|record|warn)",  # noqa: E501
)

threadcheck_asyncio = Reactor(
    "threadcheck-asyncio",
    "threadcheck._twisted_plugin._asyncio",
    "asyncio reactor with thread-affinity checks (threadcheck; THREADCHECK_MODE=raise|record|warn)",  # noqa: E501
)
