"""Loading from the Hugging Face hub with a fast, clear failure when it is out of reach.

Local paths never touch the network. A hub id is tried from the local cache first; only
if it is not cached, and the hub answers within 3 seconds, is it downloaded. Whether it
answers is asked the way a download would ask, through ``huggingface_hub``: its offline
mode (HF_HUB_OFFLINE=1), its endpoint (HF_ENDPOINT) and its HTTP session, so a proxy
(HTTPS_PROXY, …) counts. Offline, the caller gets one :class:`UserError` saying what to
download (``hf download ID --revision REV --local-dir DIR``) and where to put it, instead
of half a minute of retries and a traceback.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from lingcollapse.errors import UserError, first_line

T = TypeVar("T")


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers: False in ``huggingface_hub``'s offline mode, else whether a
    HEAD request to its endpoint, sent through its own session (requests before
    huggingface_hub 1.0, httpx since; both honour HTTPS_PROXY and friends), gets an answer
    other than a server error within ``timeout`` seconds. Asked once per process."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        response = get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # requests and httpx raise their own kinds; each means "no answer"
        return False
    return response.status_code < 500  # a proxy that cannot get through answers 502/503


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """``huggingface_hub``'s offline mode (which transformers reads) for a block: with the
    hub out of reach, a look in the cache must not spend half a minute retrying requests
    that cannot succeed (transformers 5 asks for an adapter config even with
    ``local_files_only``)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def offline_reason() -> str:
    """Why the hub counts as out of reach, for an error message."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    return f"{constants.ENDPOINT} does not answer; behind a proxy, set HTTPS_PROXY"


def download_hint(repo_id: str, revision: str | None = None, repo_type: str = "model") -> str:
    """The command that fetches ``repo_id`` (at ``revision``) into a dir, on a machine with
    network: ``hf``, the command line of huggingface_hub (``huggingface-cli`` is gone)."""
    words = ["hf download", repo_id]
    if repo_type != "model":
        words += ["--repo-type", repo_type]
    if revision:
        words += ["--revision", revision]
    return " ".join([*words, "--local-dir DIR"])


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
    online = hub_reachable()
    try:
        with contextlib.nullcontext() if online else offline():
            return loader(source, local_files_only=True, **kwargs)  # the hub cache
    except (OSError, ValueError):
        pass
    if not online:
        raise UserError(
            f"{what} {source!r} is not a local path and not in the Hugging Face cache, and "
            f"the hub cannot be reached (offline). {offline_reason()}; on a machine with "
            f"network run `{download_hint(source, kwargs.get('revision'))}`, copy DIR here "
            "and pass it"
        )
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load {what} {source!r} from the hub: {first_line(err)}") from None
