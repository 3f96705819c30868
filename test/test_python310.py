"""Jetson (JetPack 6, ROS 2 Humble) runs Python 3.10: every module must at least
parse there. Uses a Python 3.10 interpreter when this machine has one."""

import glob
import shutil
import subprocess

import pytest

CANDIDATES = [shutil.which("python3.10"), *sorted(glob.glob("/root/.pyenv/versions/3.10*/bin/python3.10")),
              *sorted(glob.glob("/usr/bin/python3.10"))]

CHECK = """
import pathlib, sys
bad = []
for p in sorted(pathlib.Path(sys.argv[1]).rglob('*.py')):
    try:
        compile(p.read_text(), str(p), 'exec', dont_inherit=True)
    except SyntaxError as e:
        bad.append(f'{p}:{e.lineno}: {e.msg}')
print('\\n'.join(bad))
sys.exit(1 if bad else 0)
"""


def _python310():
    for path in CANDIDATES:
        if path and subprocess.run([path, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
                                   capture_output=True).returncode == 0:
            return path
    return None


def test_package_parses_under_python_3_10(repo_root):
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine to check Jetson/Humble compatibility")
    for folder in ("da3_ros", "launch", "test"):
        result = subprocess.run([python, "-c", CHECK, str(repo_root / folder)], capture_output=True, text=True)
        assert result.returncode == 0, f"Python 3.10 cannot parse:\n{result.stdout}{result.stderr}"
