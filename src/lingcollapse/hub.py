"""Loading from the Hugging Face hub with a fast, clear failure when it is out of reach.

Local paths never touch the network. A hub id is tried from the local cache first; only
if it is not cached, and the hub answers a 3-second connection test, is it downloaded.
Offline, the caller gets one :class:`UserError` saying what to download and where to put
it, instead of half a minute of retries and a traceback.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from lingcollapse.errors import UserError, first_line

T = TypeVar("T")


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint accepts a TCP connection (False when HF_HUB_OFFLINE=1)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def quiet() -> None:
    """Keep transformers' loading bars and config chatter off the terminal: our own
    progress bars and one-line errors are what a user should see."""
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    disable_progress_bars()


def load_pretrained(loader: Callable[..., T], source: str, what: str, **kwargs) -> T:
    """``loader(source, **kwargs)`` (e.g. ``AutoModelForCausalLM.from_pretrained``) for a
    local dir or a hub id, with a :class:`UserError` that says how to fix a failure."""
    from safetensors import SafetensorError

    quiet()
    if Path(source).exists():
        try:
            return loader(source, local_files_only=True, **kwargs)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load {what} from {source}: {first_line(err)}") from None
        except SafetensorError as err:
            raise UserError(
                f"cannot load {what} from {source}: garbled or truncated weights "
                f"({first_line(err)}); save or copy the model again"
            ) from None
    try:
        return loader(source, local_files_only=True, **kwargs)  # the hub cache
    except (OSError, ValueError):
        pass
    if not hub_reachable():
        raise UserError(
            f"{what} {source!r} is not a local path and not in the Hugging Face cache, and "
            "the hub cannot be reached (offline). On a machine with network run "
            f"`huggingface-cli download {source} --local-dir DIR`, copy DIR here and pass it"
        )
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load {what} {source!r} from the hub: {first_line(err)}") from None
