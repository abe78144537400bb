"""Sandboxes the Ray test cluster's nodes load (`executor.node_sandbox`); importable there via PYTHONPATH.

This machine's engine has no GPU runtime, so a container cannot be given a GPU
device request. `GpuShowingSandbox` hands the GPUs Ray assigned to the container
as an environment variable instead and drops the request; that a non-empty
`ContainerSpec.gpus` becomes a device request for exactly those GPUs is checked on a
created container in test_gpus.py.
"""

from __future__ import annotations

import dataclasses

from orchestrator.sandbox import ContainerResult, ContainerSpec
from orchestrator.sandbox.docker import DockerSandbox


class GpuShowingSandbox(DockerSandbox):
    def run(self, spec: ContainerSpec) -> ContainerResult:
        shown = {**spec.env, "TEST_GPUS": ",".join(spec.gpus)}
        return super().run(dataclasses.replace(spec, gpus=(), env=shown))
