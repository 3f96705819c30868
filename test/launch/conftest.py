"""launch_testing modules (those with generate_test_description) need
launch_testing's pytest plugin, which a ROS 2 install registers. Where the
package is importable but the plugin is not loaded (launch_testing on PYTHONPATH
without its entry points), pytest would run their unittest classes without a
launch: they are skipped with the reason instead."""

from __future__ import annotations

import importlib.util

import pytest


def pytest_configure(config):
    # the plugin registers it; without the plugin, pytest would warn of an unknown mark
    config.addinivalue_line("markers", "launch_test: a launch_testing entry point (generate_test_description)")


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("launch_testing") is None or config.pluginmanager.hasplugin("launch_testing"):
        return  # not installed: those modules skip themselves; plugin loaded: it runs them as launch tests
    skip = pytest.mark.skip(reason="launch_testing is importable but its pytest plugin is not loaded "
                                   "(install it with its entry points, or add -p launch_testing.pytest.hooks)")
    for item in items:
        if hasattr(getattr(item, "module", None), "generate_test_description"):
            item.add_marker(skip)
