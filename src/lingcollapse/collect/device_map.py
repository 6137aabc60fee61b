"""A causal LM split over devices for collection (``collect --device-map``).

accelerate's big-model inference places the model's blocks over GPUs, the CPU and, with
``--offload-folder``, the disk, within the budget of ``--max-memory``; its hooks move
each block's inputs (and offloaded weights) to where the block runs. The map is planned
here before a single weight is read, on an empty model built from the config (the meta
device), with the strategy transformers uses for the same name (``auto`` and
``balanced``: even over the GPUs; ``balanced_low_0``: GPU 0 kept light; ``sequential``:
fill GPU 0 first), so a map that cannot hold the model is one error line, not a load that
fails half way or spills to disk unasked. The planned map is what is loaded.

Weights that accelerate offloads are meta tensors in the module; they are read back here
one at a time (:class:`Weights`) so that the weights' SHA-256, the model's identity, is
the one the same model loaded whole has.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from lingcollapse.errors import UserError
from lingcollapse.hub import load_pretrained
from lingcollapse.memory import gib

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def plan(
    path: str,
    strategy: str,
    max_memory: dict[int | str, int],
    dtype: torch.dtype,
    offload: bool,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, int | str]:
    """The device map ({module: GPU index, "cpu" or "disk"}) of the model at ``path``
    within ``max_memory`` ({GPU index or "cpu": bytes}), in ``dtype``; a
    :class:`UserError` when part of it would be left on disk and ``offload`` is off."""
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes, get_balanced_memory, infer_auto_device_map
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    config = load_pretrained(AutoConfig.from_pretrained, path, "model config", **kwargs)
    with init_empty_weights():
        meta = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    meta.tie_weights()  # tied weights (e.g. GPT-2's head and embeddings) share a device
    no_split = _no_split_modules(meta)
    budget = dict(max_memory)
    with quiet():  # what did not fit is said once, below
        if strategy != "sequential":
            budget = get_balanced_memory(
                meta,
                max_memory=budget,
                no_split_module_classes=no_split,
                dtype=dtype,
                low_zero=strategy == "balanced_low_0",
            )
        device_map = infer_auto_device_map(
            meta, max_memory=budget, no_split_module_classes=no_split, dtype=dtype
        )
    sizes = compute_module_sizes(meta, dtype=dtype)
    on = _bytes_on(device_map, sizes)
    if "disk" in on and (not offload or len(on) == 1):
        room = ", ".join(f"{gib(size)} on {_name(key)}" for key, size in max_memory.items())
        needs = (
            f"the model needs {gib(sizes[''])} in {str(dtype).removeprefix('torch.')} but "
            f"the budget (--max-memory, else 90% of what is free) is {room or 'nothing'}"
        )
        if len(on) == 1:  # not even its first layer fits: nowhere to run the others
            raise UserError(f"{needs}, which holds no part of it: raise --max-memory")
        raise UserError(
            f"{needs}, so {gib(on['disk'])} of it would be left on disk: raise --max-memory, "
            "add a GPU, or give --offload-folder DIR to read those layers from disk in "
            "every batch (slow)"
        )
    log.info(
        "device map (%s): %s",
        strategy,
        ", ".join(f"{gib(size)} on {_name(key)}" for key, size in on.items()),
    )
    return device_map


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """accelerate's notes while it plans and loads (what could not be placed where, that
    offloaded weights are meta tensors) off the terminal: the plan's one line says where
    the model went, and a map that cannot hold it is one error."""
    logger = logging.getLogger("accelerate")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _no_split_modules(meta: nn.Module) -> list[str]:
    """The blocks accelerate must keep whole (their residual stream on one device)."""
    get = getattr(meta, "_get_no_split_modules", None)  # transformers < 5
    if callable(get):
        return list(get("auto"))
    return sorted(getattr(meta, "_no_split_modules", None) or [])


def _bytes_on(device_map: dict[str, int | str], sizes: dict[str, int]) -> dict[int | str, int]:
    on: dict[int | str, int] = {}
    for module, device in device_map.items():
        on[device] = on.get(device, 0) + sizes[module]
    return on


def _name(device: int | str) -> str:
    return f"cuda:{device}" if isinstance(device, int) else str(device)


# ---------------------------------------------------------------- a placed model


def _hooks(module: nn.Module) -> list:
    hook = getattr(module, "_hf_hook", None)
    return [] if hook is None else list(getattr(hook, "hooks", [hook]))  # SequentialHook


def execution_device(module: nn.Module) -> torch.device | None:
    """Where accelerate runs ``module`` (its inputs are moved there), or None when no
    hook places it."""
    for hook in _hooks(module):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    return None


def offloaded(model: nn.Module, name: str) -> Tensor:
    """The tensor ``name`` of the state dict as loaded, read from the weights map of the
    innermost hook that holds it (accelerate's CPU copy, or the file on disk, in the
    loaded dtype)."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        module = model.get_submodule(".".join(parts[:cut]))
        for hook in _hooks(module):
            weights = getattr(hook, "weights_map", None)
            key = ".".join(parts[cut:])
            if weights is not None and key in weights:
                return weights[key]
    raise UserError(
        f"the weight {name} is on the meta device and no accelerate hook holds it: the "
        "model was not fully loaded"
    )


class Weights(Mapping):
    """A model's state dict in which offloaded (meta) tensors read back as loaded, one
    at a time as they are asked for: ``tensors_sha256(Weights(model))`` streams the
    weights of a model split over the GPUs, the CPU and the disk."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.state = model.state_dict()

    def __getitem__(self, name: str) -> Tensor:
        tensor = self.state[name]
        return offloaded(self.model, name) if tensor.is_meta else tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self.state)

    def __len__(self) -> int:
        return len(self.state)


@contextlib.contextmanager
def onloaded(module: nn.Module | None) -> Iterator[None]:
    """Inside: ``module``'s own offloaded weights are real tensors on the CPU (to read
    the output layer's W and b); outside, offloaded again."""
    from accelerate.utils import align_module_device, has_offloaded_params

    if module is None or not has_offloaded_params(module):
        yield
        return
    with align_module_device(module, torch.device("cpu")):
        yield
