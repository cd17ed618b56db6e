"""Memory of a training step, measured two ways (neither uses tracemalloc, which misses torch's
allocator):

* :func:`saved_activation_bytes` -- the activations a forward pass keeps for backward, counted
  exactly with ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves passes
  through the pack hook; distinct storages are summed once and parameters are left out. This is
  the figure invertible backprop shrinks, and it is deterministic.
* :func:`step_peak_rss` -- the peak resident memory a whole training step adds (activations,
  gradients, optimizer state, allocator slack), in a fresh Python subprocess: after the model, its
  actnorm init and one batch are built, the kernel's high-water mark is reset (``5`` written to
  ``/proc/self/clear_refs``), and the figure is ``VmHWM`` after one step minus ``VmRSS`` before it
  (from ``/proc/self/status``). Where the reset is not allowed it falls back to the difference of
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` before and after the step, a lower bound. On a GPU
  use ``torch.cuda.max_memory_allocated`` instead.
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from torch import Tensor, nn


def saved_activation_bytes(model: nn.Module, x: Tensor, loss=None) -> int:
    """Bytes of distinct non-parameter tensors saved for backward by ``loss(x)`` (default
    ``-model.log_prob(x).mean()``, a flow's)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    parameters |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            value = loss(x) if loss is not None else -model.log_prob(x).mean()
        del value
    finally:
        model.train(was_training)
    return sum(storages.values())


_CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from flowspec.spec.loader import load_spec
args = json.loads(sys.argv[1])
torch.manual_seed(0)
from flowspec.bench.measure import with_steps
model = with_steps(load_spec(args["spec"], args["overrides"]), args["steps"], args["invertible"]).train()
shape = tuple(model.input_shape)
x = torch.randint(0, model.levels, (args["batch"], *shape)).float()
model.initialize(x)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

try:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before, method = status("VmRSS"), "VmHWM"
except OSError:
    before, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
loss = model.bits_per_dim(x).mean()
loss.backward()
optimizer.step()
after = status("VmHWM") if method == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"kib": after - before, "method": method}))
"""


def step_peak_rss(spec_path: str, batch: int, invertible: bool = False, steps: int | None = None,
                  overrides: list[str] | None = None) -> int:
    """Peak resident bytes one training step (forward, backward, Adam step) adds, measured in a
    fresh subprocess with ``ru_maxrss`` (KiB on Linux); ``overrides`` as ``--set`` gives them."""
    args = json.dumps({"spec": str(spec_path), "batch": batch, "invertible": invertible, "steps": steps,
                       "overrides": overrides})
    out = subprocess.run([sys.executable, "-c", _CHILD, args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["kib"] * 1024
