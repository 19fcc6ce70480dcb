"""
twistd's log output in the format C{[log]} asks for: Twisted's text lines,
or one JSON object per line for a log pipeline.

twistd chooses its log observer after C{makeService} and before it starts
the service: C{AppLogger.start} takes a custom C{--logger} if one was given,
else an C{ILogObserver} component of the application, else its own text
observer on stdout (C{-n}), C{--logfile} or C{twistd.log}. So the plugin's
service tree registers the observer made here as that component when it is
put into the application (L{register_on}), writing to the very file twistd
would have written to (L{twistd_log_file}). A C{--logger} given on the
command line wins over C{[log]}; with C{--syslog} the lines go to syslog as
text.
"""

from __future__ import annotations

import datetime
import json
import signal
import sys
from typing import IO, Any, Mapping

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from twisted.python import logfile
from twisted.python.components import Componentized

from dyndns_plugin.config import LogSettings

#: Event keys that hold objects, not data: left out of a JSON line.
_OBJECT_KEYS = ("log_logger", "log_source", "log_failure", "log_level")


def json_line(event: LogEvent) -> str:
    """
    One event as one line of JSON: every data field of the event as a
    top-level key, with C{time} (ISO 8601, UTC), C{level}, C{namespace},
    C{message} (the formatted text) and, for a failure, C{traceback}; of
    Twisted's own keys C{log_format} and C{log_time} stay.
    """
    fields: dict[str, Any] = {k: v for k, v in event.items() if k not in _OBJECT_KEYS}
    when = event.get("log_time")
    fields["time"] = (
        datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(timespec="milliseconds")
        if isinstance(when, (int, float))
        else None
    )
    fields["level"] = getattr(event.get("log_level"), "name", None)
    fields["namespace"] = fields.pop("log_namespace", None)
    fields["message"] = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            fields["traceback"] = failure.getTraceback()
        except Exception:
            fields["traceback"] = repr(failure)
    return json.dumps(fields, default=_plain, separators=(",", ":")) + "\n"


def _plain(value: object) -> Any:
    """What C{json} cannot encode, as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def make_observer(settings: LogSettings, out: IO[Any]) -> ILogObserver:
    """The observer writing C{out} in C{settings.format}, from C{settings.level} up."""
    if settings.format == "json":
        observer: ILogObserver = FileLogObserver(out, json_line)
    else:
        observer = textFileLogObserver(out)
    if settings.level == "debug":
        return observer
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(settings.level))
    return FilteringLogObserver(observer, [predicate])


def twistd_log_file(twistd_options: Mapping[str, Any]) -> IO[Any]:
    """
    The file twistd itself would log to, by its own rules
    (C{twisted.scripts._twistd_unix.UnixAppLogger._getLogObserver}):
    stdout for C{--logfile -} or C{-n} without C{--logfile}, else the
    C{--logfile} (default C{twistd.log}), rotated on SIGUSR1 as twistd does.
    """
    name = twistd_options.get("logfile") or ""
    nodaemon = bool(twistd_options.get("nodaemon") or twistd_options.get("debug"))
    if name == "-" or (nodaemon and not name):
        return sys.stdout
    out = logfile.LogFile.fromFullPath(name or "twistd.log")
    if hasattr(signal, "SIGUSR1") and not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(out.rotate)  # type: ignore[attr-defined]

        signal.signal(signal.SIGUSR1, rotate)
    return out


def twistd_observer(settings: LogSettings, twistd_options: Mapping[str, Any] | None) -> ILogObserver | None:
    """
    The observer twistd should use for C{settings}, or None to leave twistd's
    own: the default text at C{info}, a C{--logger} (it wins), or C{--syslog}
    (syslog takes text lines only).
    """
    if settings == LogSettings() or twistd_options is None:
        return None
    if twistd_options.get("logger") or twistd_options.get("syslog"):
        return None
    return make_observer(settings, twistd_log_file(twistd_options))


def register_on(application: object, observer: ILogObserver) -> None:
    """
    Make C{observer} the log observer twistd's C{AppLogger.start} finds on
    C{application} (a L{Componentized}, as twistd makes it); anything else
    (an embedding program's service) is left alone.
    """
    if isinstance(application, Componentized):
        application.setComponent(ILogObserver, observer)
