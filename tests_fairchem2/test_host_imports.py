"""Importing the package under fairchem 2.x registers the 2.x adapter (with fairchem and with the tools) and
nothing of the 1.10 one, and every host-neutral part imports here too."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from fairchem.core.common.registry import registry

import leignn_plugin
from leignn_plugin.fairchem2 import harness, models
from leignn_plugin.tools_host import installed

NEUTRAL = ["core.model", "graph", "accel", "adapters.batch", "adapters.checkpoint_files", "data.cli",
           "testing.suite", "console"]


def test_the_2x_host_is_registered():
    assert leignn_plugin.HOST_FAIRCHEM == 2
    assert leignn_plugin.LEIGNNBackbone is models.LEIGNNBackbone
    for name, cls in models.REGISTERED_MODELS.items():
        assert registry.get_model_class(name) is cls
        assert registry.get_model_class(f"{cls.__module__}.{cls.__name__}") is cls


def test_the_2x_host_serves_the_tools():
    host = installed()
    assert host.major == 2
    assert host.atoms_batch is harness.atoms_batch and host.potential is harness.potential
    assert host.baselines == {"escn-md": harness.esen_hydra}
    assert host.trainer_evaluation is None  # the accuracy benchmark trains through main.py (1.10)


def test_the_1x_adapter_is_not_imported():
    done = subprocess.run([sys.executable, "-c", "import sys, leignn_plugin; "
                           "print(any(m.startswith('leignn_plugin.fairchem1') for m in sys.modules))"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("module", NEUTRAL)
def test_host_neutral_modules_import(module):
    importlib.import_module(f"leignn_plugin.{module}")
