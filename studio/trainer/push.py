"""Uploading an export to the Hugging Face Hub with huggingface_hub (card included). The token comes from
HF_TOKEN or the Hub's own login; every failure says what to do."""

from __future__ import annotations

from pathlib import Path


class PushError(Exception):
    """A push that cannot be done; the message says what to do."""


def push(folder: Path, repo_id: str, private: bool) -> str:
    """Create the repo (or reuse one of yours) and upload the folder; returns its URL."""
    from huggingface_hub import HfApi, constants, errors, get_token

    from studio.planning.hub_models import HUB_ID, offline, reachable

    if not HUB_ID.match(repo_id):
        raise PushError(f"--push {repo_id}: a Hub repo is named org/name (letters, digits, . _ -)")
    if offline():
        raise PushError("HF_HUB_OFFLINE=1 is set: unset it to push")
    if get_token() is None:
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login` with a token that can write")
    if not reachable(constants.ENDPOINT):
        raise PushError(f"the Hub ({constants.ENDPOINT}) cannot be reached: connect to the network and push the "
                        f"export again with `hf upload {repo_id} {folder}`")
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message="studio export")
    except errors.HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        if status == 401:
            raise PushError("the Hub refused the token (401): it is invalid or expired; make a new one with write "
                            "access and set HF_TOKEN, or `hf auth login`") from None
        if status == 403:
            raise PushError(f"the token cannot write to {repo_id} (403): use a token with write access, and check "
                            f"that you may create repos under {repo_id.split('/')[0]}") from None
        if status == 409:
            raise PushError(f"the name {repo_id} is taken (409): choose another --push name") from None
        raise PushError(f"the Hub answered {status}: {e}") from None
    except ValueError as e:  # huggingface_hub's answer to a 400 from the Hub's check of the card's metadata
        raise PushError(f"the Hub refused the model card's metadata ({' '.join(str(e).split())}); fix README.md "
                        f"in the export, then push again with `hf upload {repo_id} {folder}`") from None
    return f"{constants.ENDPOINT}/{repo_id}"
