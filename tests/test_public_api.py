"""The package's front door: ``from imagenet_pipe import ...`` gives the functions and classes, and
importing the package (or the command line) imports neither torch nor DALI."""

from __future__ import annotations

import inspect
import subprocess
import sys


def test_top_level_names_are_the_functions_and_classes():
    # issue 8: 'from imagenet_pipe import convert' gave the module convert.py
    from imagenet_pipe import LoaderConfig, build_loader, convert, verify
    from imagenet_pipe.conversion import convert as conversion_convert
    from imagenet_pipe.loaders import LoaderConfig as loaders_config
    from imagenet_pipe.verification import verify as verification_verify

    assert inspect.isfunction(convert) and convert is conversion_convert
    assert inspect.isfunction(verify) and verify is verification_verify
    assert inspect.isfunction(build_loader)
    assert inspect.isclass(LoaderConfig) and LoaderConfig is loaders_config


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_importing_the_package_and_its_names_stays_light():
    heavy = {"torch", "nvidia.dali"}
    assert not heavy & _modules_after("import imagenet_pipe")
    # the names resolve lazily; converting and verifying never need torch or DALI
    assert not heavy & _modules_after("from imagenet_pipe import convert, verify")
    assert not heavy & _modules_after("from imagenet_pipe.cli import main")
    assert "torch" in _modules_after("from imagenet_pipe import build_loader")
