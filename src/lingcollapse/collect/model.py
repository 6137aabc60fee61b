"""Any Hugging Face causal LM as a source of context embeddings (paper §3.2).

The embedding of class ``x_{t+1}`` is the input of the output layer at position t: the
hidden state after the final norm. For every architecture we know of, the base model's
``last_hidden_state`` is exactly that, so the train pass runs the body alone and never
computes logits (at V = 50,257 the head is the largest matmul of a small model). This
is checked on every load with a forward pre-hook on ``get_output_embeddings()``; a model
where it does not hold is run whole and the head's input is taken from the hook.

The same probe checks the model's logits: they must be ``W h + b`` of that head input,
or the transform its config names (Gemma-2's soft-capping, Cohere's and Granite's
scales: :func:`~lingcollapse.metrics.classifier.logit_transform`), to the rounding of
the model's dtype. A model whose forward does anything else after its head still gives
train statistics, but a validation pass refuses it: its loss and decisions would not be
the model's.

:func:`load_model` loads a model for ``lingcollapse collect``; :func:`embedding_model`
wraps one already in memory (any ``nn.Module`` causal LM, PEFT-wrapped ones included),
and both go through the same checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from lingcollapse.collect import device_map as placement
from lingcollapse.device import group_max_memory
from lingcollapse.errors import UserError
from lingcollapse.hub import load_pretrained
from lingcollapse.metrics.classifier import logit_transform, output_layer
from lingcollapse.models.attention import use_sdpa
from lingcollapse.models.saved import model_dir_of, read_identity
from lingcollapse.stats.files import tensors_sha256
from lingcollapse.stats.validation import LogitTransform

DTYPES = {
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


@dataclass
class EmbeddingModel:
    """A causal LM with what collection needs: the embeddings of requested layers,
    the classifier (``lm_head`` weight and bias), and its identity."""

    model: nn.Module
    name: str
    revision: str | None
    body_only: bool  # base model's last_hidden_state == lm_head input (checked)
    _head: tuple[Tensor, Tensor | None] | None = field(default=None, repr=False, compare=False)
    # what the forward does to W h + b before its softmax (checked on load); None: no
    # known transform explains its logits, and logits_problem says how they differ
    logits: LogitTransform | None = field(default_factory=LogitTransform)
    logits_problem: str = ""

    def logit_transform(self) -> LogitTransform:
        """The transform validation applies to ``W h + b``, or a :class:`UserError`
        where the model's logits are something else (checked on load)."""
        if self.logits is None:
            raise UserError(
                f"the logits of {self.name} are not its output layer's W h + b, nor a "
                f"soft-capped or scaled W h + b ({self.logits_problem}): its forward "
                "changes them in a way lingcollapse does not know, so the validation "
                "loss and NC4 would not be the model's; collect the train split only"
            )
        return self.logits

    @property
    def vocab_size(self) -> int:
        return self.classifier()[0].shape[0]

    @property
    def dim(self) -> int:
        return self.classifier()[0].shape[1]

    @property
    def num_layers(self) -> int:
        config = self.model.config
        for key in ("num_hidden_layers", "num_layers", "n_layer"):
            if getattr(config, key, None):
                return int(getattr(config, key))
        raise UserError(f"cannot tell how many layers {self.name} has; use --layers last")

    @property
    def device(self) -> torch.device:
        """Where token ids go: the device the input embeddings run on (accelerate's
        execution device for a model split over devices), else the first parameter's."""
        get = getattr(self.model, "get_input_embeddings", None)
        try:
            embed = get() if callable(get) else None
        except NotImplementedError:
            embed = None
        if isinstance(embed, nn.Module):
            placed = placement.execution_device(embed)
            if placed is not None:
                return placed
            weight = next(embed.parameters(), None)
            if weight is not None and not weight.is_meta:
                return weight.device
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def output_device(self) -> torch.device:
        """The device the output layer's input comes out on: the last block's for a
        model split over devices (where ``collect --device-map`` keeps the statistics)."""
        ids = torch.arange(8, device=self.device).remainder(self.vocab_size).unsqueeze(0)
        return self.embeddings(ids, ["last"])["last"].device

    @torch.inference_mode()
    def widths(self, layers: list[int | str]) -> dict[int | str, int]:
        """``{layer: d}``: the head's input width for ``"last"``, the width of each other
        layer's output read off a 2-token probe (OPT-350m's blocks are 1,024 wide, its
        head reads 512 after ``project_out``)."""
        inner = [layer for layer in layers if layer != "last"]
        found = {}
        if inner:
            ids = torch.arange(2, device=self.device).remainder(self.vocab_size).unsqueeze(0)
            found = {layer: h.shape[-1] for layer, h in self.embeddings(ids, inner).items()}
        return {layer: self.dim if layer == "last" else found[layer] for layer in layers}

    def weights_sha256(self) -> str:
        """SHA-256 of every tensor of the state dict (name, dtype, shape, bytes), as loaded
        in this dtype: the model's identity in provenance and the resume fingerprint,
        whatever its name. Streamed one tensor at a time (one host copy each on CUDA;
        weights accelerate offloaded to the CPU or disk read back as loaded, so a model
        split over devices has the identity of the same model loaded whole); about a
        second per GB of weights, so compute it once per pass."""
        return tensors_sha256(placement.Weights(self.model))

    def classifier(self) -> tuple[Tensor, Tensor | None]:
        """``W`` (V, d) and ``b`` (V,) or None of Eq. 1, in the model's dtype and device
        (read once: a head that is not a plain ``nn.Linear`` is probed with a forward; an
        offloaded one is read to the CPU)."""
        if self._head is None:
            get = getattr(self.model, "get_output_embeddings", None)
            with placement.onloaded(get() if callable(get) else None):
                self._head = output_layer(self.model)
        return self._head

    @property
    def hf_style(self) -> bool:
        """Whether the model takes Hugging Face's keywords (``input_ids``, hidden states);
        any other module is called on the ids alone and gives its last layer only."""
        return getattr(self.model, "config", None) is not None

    @torch.inference_mode()
    def embeddings(
        self, ids: Tensor, layers: list[int | str], attention_mask: Tensor | None = None
    ) -> dict[int | str, Tensor]:
        """``{layer: (B, T, d)}`` for layer indices (0 = the token embeddings, i = the
        output of block i) and ``"last"`` (the input of the output layer); ``ids`` (B, T),
        ``attention_mask`` (B, T) passed on to the model where given."""
        hidden = any(layer != "last" for layer in layers)
        if hidden and not self.hf_style:
            raise UserError(
                f"{self.name} is no Hugging Face model: only its last layer can be read "
                "(use layers=None)"
            )
        if self.body_only:
            kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
            out = self.model.base_model(
                input_ids=ids, output_hidden_states=hidden, use_cache=False, **kwargs
            )
            last = out.last_hidden_state
        else:
            out, last = self._through_head(ids, hidden, attention_mask)
        return {layer: last if layer == "last" else out.hidden_states[layer] for layer in layers}

    def _through_head(self, ids: Tensor, hidden: bool, attention_mask: Tensor | None = None):
        captured = {}

        def hook(module, args):
            captured["h"] = args[0]

        handle = self.model.get_output_embeddings().register_forward_pre_hook(hook)
        try:
            if self.hf_style:
                kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
                out = self.model(
                    input_ids=ids, output_hidden_states=hidden, use_cache=False, **kwargs
                )
            else:
                out = self.model(ids)
        finally:
            handle.remove()
        if "h" not in captured or captured["h"].shape[:2] != ids.shape:
            seen = tuple(captured["h"].shape) if "h" in captured else "nothing"
            raise UserError(
                f"the output layer of {self.name} saw {seen} for ids of shape "
                f"{tuple(ids.shape)}: its forward must apply get_output_embeddings() to "
                "every position (B, T, d)"
            )
        return out, captured["h"]


def resolve_model_path(source: str) -> str:
    """A run dir means its ``model/``; anything else is a model dir or a hub id."""
    found = model_dir_of(source)
    return source if found is None else str(found)


def load_model(
    source: str,
    revision: str | None = None,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    device_map: str | None = None,
    max_memory: dict[int | str, int] | None = None,
    offload_folder: str | None = None,
) -> EmbeddingModel:
    """Load a causal LM (run dir, model dir or hub id) for collection, in eval mode: on
    ``device``, or with ``device_map`` (``auto``, ``balanced``, ``balanced_low_0``,
    ``sequential``) split by accelerate over the devices of ``max_memory`` ({GPU index or
    "cpu": bytes}) and, with ``offload_folder``, the disk; the map is planned and checked
    to hold the model before any weight is read (:mod:`.device_map`)."""
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise UserError(f"unknown --dtype {dtype!r}: use one of float32, bf16, fp16")
    path = resolve_model_path(source)
    name = _identity(source, path)  # checks a trained model's files before they load
    kwargs = {"dtype": DTYPES[dtype], "trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    if device_map is not None:
        kwargs["device_map"] = placement.plan(
            path,
            device_map,
            group_max_memory(max_memory, list(range(torch.cuda.device_count()))),
            DTYPES[dtype],
            offload_folder is not None,
            revision,
            trust_remote_code,
        )
        if "disk" in kwargs["device_map"].values():
            kwargs["offload_folder"] = offload_folder
    with placement.quiet():
        model = load_pretrained(AutoModelForCausalLM.from_pretrained, path, "model", **kwargs)
    if device_map is None:
        model.to(device)
    model.eval()
    use_sdpa(model)  # GPT-Neo only (others load with SDPA): fused kernels, no (B, H, T, T)
    if model.get_output_embeddings() is None:
        raise UserError(
            f"{source} has no output layer (get_output_embeddings() is None): it is not a causal LM"
        )
    return embedding_model(model, name, revision)


def embedding_model(model: nn.Module, name: str, revision: str | None = None) -> EmbeddingModel:
    """Wrap a causal LM for collection, checked: it has an output layer, gives finite
    embeddings, whether its base model's ``last_hidden_state`` is the head's input
    (else every pass runs the whole model and reads that input with a hook), and what
    its forward does to the head's output (:func:`_check_logits`). The model is used as
    it is: put it in eval mode first."""
    if not isinstance(model, nn.Module):
        raise UserError(f"expected a torch.nn.Module causal LM, not {type(model).__name__}")
    output_layer(model)  # a UserError when there is none
    wrapped = EmbeddingModel(model, name, revision, body_only=True)
    probe = _probe(wrapped)  # one forward through the head serves both checks
    wrapped.body_only = _body_is_head_input(wrapped, probe)
    _check_finite(wrapped)
    wrapped.logits, wrapped.logits_problem = _check_logits(wrapped, probe)
    return wrapped


def _identity(source: str, path: str) -> str:
    """The model's name for the stats metadata: the id ``train`` recorded in the model
    dir (its files checked against their SHA-256 first), a run's name, or the hub
    id/path."""
    recorded = read_identity(Path(path)) if Path(path).is_dir() else None
    if recorded is not None:
        return str(recorded.get("model", source))
    run_config = Path(path).parent / "config.json"
    if Path(path).name == "model" and run_config.is_file():
        try:
            return json.loads(run_config.read_text()).get("model", Path(path).parent.name)
        except ValueError:
            return Path(path).parent.name
    return source


@torch.inference_mode()
def _check_finite(m: EmbeddingModel) -> None:
    """NaN or Inf weights make every statistic NaN: refuse them before a long pass."""
    weight, bias = m.classifier()
    ids = torch.arange(8, device=m.device).remainder(m.vocab_size).unsqueeze(0)  # (1, 8)
    h = m.embeddings(ids, ["last"])["last"]  # (1, 8, d)
    tensors = [weight, h] if bias is None else [weight, bias, h]
    if not all(torch.isfinite(t).all() for t in tensors):
        raise UserError(
            f"{m.name} gives NaN or Inf (in its output layer or its embeddings of a few "
            "tokens): its weights are damaged, or overflow in this --dtype (try float32)"
        )


@torch.inference_mode()
def _probe(m: EmbeddingModel) -> tuple[Tensor, object, Tensor]:
    """``(ids (1, 8), the model's output, the head's input (1, 8, d))``: the whole model
    run once on 8 tokens (a model split over devices, even offloaded, reads its weights
    once for the checks of :func:`embedding_model`)."""
    ids = torch.arange(8, device=m.device).remainder(m.vocab_size).unsqueeze(0)  # (1, 8)
    out, head_input = m._through_head(ids, hidden=False)
    return ids, out, head_input


@torch.inference_mode()
def _body_is_head_input(m: EmbeddingModel, probe: tuple) -> bool:
    """Does base_model(...).last_hidden_state equal the input of the output layer?"""
    ids, _, head_input = probe
    if not m.hf_style:
        return False
    try:
        body = m.model.base_model(input_ids=ids, use_cache=False).last_hidden_state
    except (AttributeError, TypeError):
        return False
    return body.shape == head_input.shape and torch.equal(body, head_input)


@torch.inference_mode()
def _check_logits(m: EmbeddingModel, probe: tuple) -> tuple[LogitTransform | None, str]:
    """The transform that turns the head's output on the probe into the model's own
    logits: the one its config names, else the identity; ``(None, how they differ)``
    where neither does (an unknown transform after the head, or no logits returned)."""
    ids, out, h = probe
    if isinstance(out, tuple | list):
        out = out[0] if out else None
    logits = out if isinstance(out, Tensor) else getattr(out, "logits", None)
    if not isinstance(logits, Tensor) or tuple(logits.shape) != (*ids.shape, m.vocab_size):
        return None, "its forward returns no (B, T, V) logits to check them against"
    z = m.model.get_output_embeddings()(h).double().to(logits.device)  # its own bits (1, 8, V)
    got = logits.double()
    # a transform costs the model a few roundings in its dtype (or float32 where it
    # upcasts first); any other change of the logits is far larger than that
    eps = max(torch.finfo(h.dtype).eps, torch.finfo(logits.dtype).eps)
    worst = float("inf")
    for transform in dict.fromkeys([logit_transform(m.model), LogitTransform()]):
        want = transform(z)
        slack = 8 * eps * (abs(transform.scale) * z.abs() + want.abs())
        if ((got - want).abs() <= slack).all():
            return transform, ""
        worst = min(worst, float((got - want).abs().max()))
    return None, f"they differ by up to {worst:.3g} on a probe of 8 tokens"
