"""
The [log] format: JSON lines a pipeline can parse, the level filter, the
file twistd would log to, and the observer reaching twistd's application.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

from twisted.application import service
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python import logfile
from twisted.trial import unittest

from dyndns_plugin.config import LogSettings, settings_from_dict
from dyndns_plugin.logformat import json_line, make_observer, twistd_log_file, twistd_observer
from dyndns_plugin.tap import DynDNSApplication


def emit(observer: Any, level: LogLevel, format: str, **fields: Any) -> None:
    Logger(namespace="test", observer=observer).emit(level, format, **fields)


class JSONLineTests(unittest.TestCase):
    def test_fields_are_top_level_keys(self) -> None:
        out = io.StringIO()
        observer = make_observer(LogSettings(format="json"), out)
        emit(observer, LogLevel.info, "user {user} via {method}\nsecond line", user="alice", method="dyndns2")
        emit(observer, LogLevel.warn, "bytes {data!r}", data=b"\xff\x00", addresses={"x"})
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)  # a newline in the text stays inside its line
        first, second = (json.loads(line) for line in lines)
        self.assertEqual(
            (first["user"], first["method"], first["level"], first["namespace"]),
            ("alice", "dyndns2", "info", "test"),
        )
        self.assertEqual(first["message"], "user alice via dyndns2\nsecond line")
        self.assertRegex(first["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
        self.assertEqual((second["level"], second["addresses"]), ("warn", ["x"]))

    def test_failure_has_its_traceback(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="test", observer=make_observer(LogSettings(format="json"), out))
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.failure("it broke")
        event = json.loads(out.getvalue())
        self.assertIn("ZeroDivisionError", event["traceback"])
        self.assertEqual(event["message"], "it broke")

    def test_json_line_is_one_line(self) -> None:
        line = json_line({"log_format": "{a}", "a": "x\ny", "log_time": 0.0, "log_level": LogLevel.info})
        self.assertEqual(line.count("\n"), 1)
        self.assertEqual(json.loads(line)["time"], "1970-01-01T00:00:00.000+00:00")


class LevelTests(unittest.TestCase):
    def test_below_level_is_dropped(self) -> None:
        out = io.StringIO()
        observer = make_observer(LogSettings(format="text", level="warn"), out)
        emit(observer, LogLevel.info, "quiet")
        emit(observer, LogLevel.error, "loud")
        self.assertNotIn("quiet", out.getvalue())
        self.assertIn("loud", out.getvalue())


class TwistdTests(unittest.TestCase):
    def test_log_file_rules(self) -> None:
        """stdout for -n without --logfile and for --logfile -, else the file (default twistd.log)."""
        self.assertIs(twistd_log_file({"nodaemon": True, "logfile": None}), sys.stdout)
        self.assertIs(twistd_log_file({"nodaemon": True, "logfile": "-"}), sys.stdout)
        path = os.path.abspath(self.mktemp())
        out = twistd_log_file({"nodaemon": True, "logfile": path})
        self.addCleanup(out.close)
        assert isinstance(out, logfile.LogFile)
        self.assertEqual(out.path, path)

    def test_default_settings_leave_twistd_alone(self) -> None:
        """text at info is twistd's own; --logger and --syslog win over [log]."""
        options = {"nodaemon": True, "logfile": None, "logger": None, "syslog": False}
        self.assertIsNone(twistd_observer(LogSettings(), options))
        self.assertIsNone(twistd_observer(LogSettings(format="json"), {**options, "logger": "x.y"}))
        self.assertIsNone(twistd_observer(LogSettings(format="json"), {**options, "syslog": True}))
        self.assertIsNotNone(twistd_observer(LogSettings(format="json"), options))

    def test_observer_registered_on_the_application(self) -> None:
        """What twistd's AppLogger.start looks up: ILogObserver of the application."""
        application = service.Application("dyndns")
        tree = DynDNSApplication(settings_from_dict({}))
        tree.log_observer = observer = make_observer(LogSettings(format="json"), io.StringIO())
        tree.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), observer)
        self.assertIn(tree, list(service.IServiceCollection(application)))
