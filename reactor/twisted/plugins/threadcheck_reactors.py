"""Makes ``--reactor=threadcheck`` available to trial and twistd."""

from twisted.application.reactors import Reactor

threadcheck = Reactor(
    "threadcheck",
    "threadcheck_reactor._plugin",
    "Default reactor with thread-affinity checks (threadcheck; THREADCHECK_MODE=raise|record|warn)",  # noqa: E501
)

threadcheck_asyncio = Reactor(
    "threadcheck-asyncio",
    "threadcheck_reactor._asyncio",
    "asyncio reactor with thread-affinity checks (threadcheck; THREADCHECK_MODE=raise|record|warn)",  # noqa: E501
)
