"""``warmstart push ARTIFACT REPO_ID``: upload an artifact folder to a Hugging Face hub model repository.

One commit through ``huggingface_hub`` (``create_repo`` then ``create_commit``) holding every file of the artifact;
its README.md is the model card the hub shows. The artifact is hash-checked first, so a damaged or edited folder is
never published. ``endpoint`` (or ``HF_ENDPOINT``) points at another hub; the token comes from ``token``,
``HF_TOKEN`` or a saved login, as in ``huggingface_hub``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ParameterError, PushError

HTTP_CLIENTS = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "requests",
    "urllib3",
)  # what huggingface_hub uses


def push_artifact(
    artifact: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload ``artifact`` to the model repository ``repo_id`` (created when missing); returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled

    from .artifact import verify_artifact

    folder = Path(artifact)
    verify_artifact(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    api = HfApi(endpoint=endpoint, token=token)
    where = api.endpoint
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        ops = [
            CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
            for p in files
        ]
        info = api.create_commit(
            repo_id, ops, commit_message=commit_message or f"Upload warmstart artifact {folder.name}"
        )
    except HFValidationError as e:
        raise ParameterError(
            f"{repo_id!r} is not a valid hub repository id ({e}); write it as NAME or ORG/NAME."
        ) from e
    except OfflineModeIsEnabled as e:
        raise PushError(f"cannot push to {where}: HF_HUB_OFFLINE is set. Unset it to upload.") from e
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        hint = (
            " Log in (`hf auth login`) or set HF_TOKEN to a token that may write to this repository."
            if status in (401, 403)
            else ""
        )
        said = " ".join(
            x for x in str(e).splitlines() if x.strip() and not x.startswith("For more information")
        )
        raise PushError(
            f"{where} refused the upload of {folder} to {repo_id} (HTTP {status}: {said}).{hint}"
        ) from e
    except Exception as e:  # connection refused, DNS failure, timeouts: the HTTP client's own error types
        if type(e).__module__.split(".")[0] not in HTTP_CLIENTS:
            raise
        raise PushError(f"cannot reach {where} to push {folder}: {type(e).__name__}: {e}") from e
    return str(info.commit_url)
