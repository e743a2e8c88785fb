"""The process entrypoints apply each service's interpreter settings (shared/process.py); importing
the platform's modules and building its apps changes none (each case in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

DEFAULTS = "import gc, sys; assert gc.get_threshold()[0] == 700 and sys.getswitchinterval() == 0.005\n"
SETTINGS = ("from shared.settings import PlatformSettings\n"
            "settings = PlatformSettings(database_url='postgresql://x@127.0.0.1:1/x', kafka_bootstrap_servers='x:1')\n")


def run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", DEFAULTS + code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_importing_the_platform_and_building_its_apps_keeps_the_interpreter_defaults():
    run(SETTINGS + "import eldercare.cli, services.registry.importer, services.reporting.worker\n"
        "for name in ('registry', 'orders', 'alerts', 'reporting'):\n"
        "    __import__(f'services.{name}.app', fromlist=['create_app']).create_app(settings)\n"
        "assert gc.get_threshold()[0] == 700 and sys.getswitchinterval() == 0.005 and gc.get_freeze_count() == 0\n")


def test_serve_applies_the_reporting_gc_threshold_and_the_registry_switch_interval():
    run(SETTINGS + "from eldercare.cli import serve_app\n"
        "serve_app('reporting', settings)\n"
        "assert gc.get_threshold()[0] == 300_000 and sys.getswitchinterval() == 0.005\n"
        "serve_app('registry', settings)\n"
        "assert sys.getswitchinterval() == 0.0005\n")


def test_the_command_does_not_import_the_benchmarks_until_a_bench_command_runs():
    run("import eldercare.cli\nassert not [m for m in sys.modules if m == 'bench' or m.startswith('bench.')]\n")
