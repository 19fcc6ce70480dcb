"""
The container files (Containerfile, compose.yaml, examples/container/):
the image's health check, exposed ports and user agree with the
configuration it ships, and compose publishes those ports and keeps the
state in a volume. The image is really built and run by
tests/integration/test_container.py.
"""

from __future__ import annotations

import os
import re

import yaml
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.config import load_settings

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONFIG = os.path.join(ROOT, "examples", "container", "dyndns.toml")


def containerfile() -> str:
    with open(os.path.join(ROOT, "Containerfile")) as f:
        return f.read()


def instruction(text: str, name: str) -> list[str]:
    """The arguments of every C{name} instruction (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", joined, re.M)]


class ContainerfileTests(SynchronousTestCase):
    def test_health_check_asks_the_admin_listener(self) -> None:
        """HEALTHCHECK asks GET /health on the port the shipped configuration's admin listener has."""
        settings = load_settings(CONFIG)
        (check,) = instruction(containerfile(), "HEALTHCHECK")
        url = re.search(r"http://127\.0\.0\.1:(\d+)/health", check)
        assert url is not None, check
        self.assertEqual(settings.admin.listen, (f"tcp:{url.group(1)}:interface=127.0.0.1",))

    def test_base_is_replaceable_and_defaults_to_python_slim(self) -> None:
        """The one FROM takes ARG BASE, whose default is the official slim Python image."""
        text = containerfile()
        self.assertEqual(instruction(text, "FROM"), ["${BASE}"])
        self.assertEqual(instruction(text, "ARG"), ["BASE=docker.io/library/python:3.12-slim"])
        self.assertLess(text.index("ARG BASE="), text.index("FROM ${BASE}"))

    def test_runs_unprivileged_with_state_in_a_volume(self) -> None:
        """A non-root USER, the store and GnuDIP key in the VOLUME, and twistd on the shipped file."""
        text = containerfile()
        self.assertEqual(instruction(text, "USER"), ["dyndns"])
        self.assertEqual(instruction(text, "VOLUME"), ['["/var/lib/dyndns"]'])
        settings = load_settings(CONFIG)
        for path in (settings.store_path, settings.gnudip.http_key_file):
            self.assertEqual(os.path.dirname(path), "/var/lib/dyndns")
        (command,) = instruction(text, "CMD")
        self.assertIn('"--config", "/etc/dyndns/dyndns.toml"', command)
        self.assertIn("COPY examples/container/dyndns.toml /etc/dyndns/dyndns.toml", text)

    def test_exposes_the_configured_ports(self) -> None:
        """EXPOSE lists exactly the ports the configuration listens on (none below 1024: no root)."""
        settings = load_settings(CONFIG)
        assert settings.http is not None
        expected = {f"{port}/udp" for _host, port in settings.dns.listen}
        expected |= {f"{port}/tcp" for _host, port in settings.dns.listen}
        for description in (*settings.http.listen, *settings.gnudip.listen):
            expected.add(description.split(":")[1] + "/tcp")
        (exposed,) = instruction(containerfile(), "EXPOSE")
        self.assertEqual(set(exposed.split()), expected)
        self.assertTrue(all(int(p.split("/")[0]) >= 1024 for p in expected))


class ComposeTests(SynchronousTestCase):
    def test_publishes_the_image_ports_and_keeps_state(self) -> None:
        """compose.yaml builds the Containerfile, publishes every exposed port, and mounts the state volume."""
        with open(os.path.join(ROOT, "compose.yaml")) as f:
            compose = yaml.safe_load(f)
        service = compose["services"]["dyndns"]
        self.assertEqual(service["build"]["dockerfile"], "Containerfile")
        (exposed,) = instruction(containerfile(), "EXPOSE")
        published = {port.split(":", 1)[1] for port in service["ports"]}
        self.assertEqual(published, set(exposed.split()))
        self.assertIn("dyndns-state:/var/lib/dyndns", service["volumes"])
        self.assertIn("dyndns-state", compose["volumes"])
        self.assertIn("./examples/container/dyndns.toml:/etc/dyndns/dyndns.toml:ro", service["volumes"])
        self.assertEqual(service["cap_drop"], ["ALL"])
