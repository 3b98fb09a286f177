"""Hugging Face Hub: push a run or checkpoint to a model repo, load one back by repo id.

Everything goes through `huggingface_hub`'s own `PyTorchModelHubMixin` (save_pretrained,
push_to_hub -> create_repo + upload_folder, from_pretrained -> hf_hub_download) and `ModelCard`,
except the reading of weights: only `model.safetensors` is read, through `genlab.checkpoint`, and
strictly; the mixin's pickle fallback (`pytorch_model.bin` through `torch.load`) is never reached.
A repo (or a local folder in the same layout) holds:

    model.safetensors   the weights (fp16 by default), keys model.<name>, with genlab's JSON header,
                        so `genlab.load(<that file>)` reads it too
    config.json         the model's name and config, training step and training config
    README.md           a generated model card showing the sample grid
    sample_grid.png     samples from a fixed seed (rows: classes or the first categorical code)

    python -m genlab.hub push checkpoints/mnist-dcgan.safetensors you/genlab-mnist-dcgan
    python -m genlab.hub save runs/my-run ./my-run-for-hub      # the same folder, written locally
    python -m genlab.hub pull you/genlab-mnist-dcgan            # download, load, print a summary
"""
from __future__ import annotations

import argparse
import socket
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin
from torch import nn

from .checkpoint import CheckpointError, drop_parts, model_from_checkpoint, read_checkpoint, save_checkpoint
from .config import ConfigError, to_dict
from .latent import sample_grid_image
from .models import HasCodes, HasEncoder, HasLatents, HasLikelihood, build_model, has_classes

WEIGHTS_FILE = "model.safetensors"
SAMPLE_GRID_FILE = "sample_grid.png"
PROBE_TIMEOUT_S = 3.0

MODEL_CARD = """---
{{ card_data }}
---

# {{ title }}

A genlab **{{ registered_name }}** model (genlab: a hands-on lab for deep generative image models).

![Samples from a fixed seed]({{ sample_grid }})

| | |
|---|---|
| model | {{ registered_name }} |
| training steps | {{ step }} |
| data | {{ dataset }} |
| image | {{ channels }} x {{ image_size }} x {{ image_size }} |
| latent | {{ latent }} |
| can | {{ capabilities }} |
| weights | {{ dtype }} safetensors |

Rows of the grid run over {{ rows }}.

## Use

```python
import torch
from genlab.hub import load_from_hub
model = load_from_hub("{{ repo_id }}")     # a genlab model in eval mode
images = model.sample(16)                  # (16, C, H, W) in [-1, 1]{{ usage }}
```

Or explore it: `python -m genlab.explorer`, then type the repo id into "Hugging Face Hub repo id".

## Training configuration

```json
{{ train_config }}
```
"""


class HubError(RuntimeError):
    """The Hub cannot be reached, the repo does not exist, or it is not a genlab model."""


class GenlabHubModel(nn.Module, PyTorchModelHubMixin, library_name="genlab",
                     pipeline_tag="unconditional-image-generation", tags=["genlab", "image-generation"],
                     model_card_template=MODEL_CARD):
    """A genlab model wrapped for the Hub mixin; its weights live under `model.` like a checkpoint."""

    def __init__(self, name: str, model_config: dict, step: int = 0, train_config: dict | None = None,
                 dropped: list | None = None):
        super().__init__()
        self.model = build_model(name, model_config)
        drop_parts(self.model, dropped or [])                   # e.g. a discriminator left out of an export
        self.genlab_meta = {"model": name, "model_config": model_config, "step": step,
                            "train_config": train_config or {}, "dropped": list(dropped or [])}
        self.half_weights = True

    def _save_pretrained(self, save_directory: Path) -> None:
        """Weights as one genlab checkpoint (fp16 unless half_weights is off), and the sample grid."""
        meta = {k: self.genlab_meta[k] for k in ("model_config", "step", "train_config", "dropped")}
        save_checkpoint(Path(save_directory) / WEIGHTS_FILE, self.model, meta, half=self.half_weights)
        (Path(save_directory) / SAMPLE_GRID_FILE).write_bytes(sample_grid_image(self.model))

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir, force_download: bool,
                         local_files_only: bool, token, map_location: str = "cpu", strict: bool = True,
                         **model_kwargs):
        """The mixin's loading step, replaced: `model.safetensors` only (no pickle fallback), read by
        `genlab.checkpoint` and loaded strictly into the model config.json describes."""
        model_file = weights_file(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                  local_files_only=local_files_only, token=token)
        wrapper = cls(**model_kwargs)
        header, tensors = read_checkpoint(model_file)                 # checked header and checksum
        description = dict(header, model=wrapper.genlab_meta["model"],  # config.json decides the model
                           model_config=wrapper.genlab_meta["model_config"], dropped=wrapper.genlab_meta["dropped"])
        wrapper.model = model_from_checkpoint(description, tensors, model_file)       # strict=True
        return wrapper.to(map_location).eval()

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """The mixin's card template and metadata, tagged with the model's name and filled with what
        this model is and a link to its sample grid."""
        info = self._hub_mixin_info
        data = ModelCardData(**info.model_card_data.to_dict())                  # a copy: tags per model
        data.tags = sorted(set(data.tags or []) | {self.genlab_meta["model"]})
        return ModelCard.from_template(card_data=data, template_str=info.model_card_template,
                                       **dict(card_fields(self), **kwargs))


def weights_file(model_id: str, **download) -> str:
    """The path of a repo's (or local folder's) `model.safetensors`; a clear HubError if it has none."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    if Path(model_id).is_dir():
        path = Path(model_id) / WEIGHTS_FILE
        if not path.is_file():
            raise HubError(f"{model_id} has no {WEIGHTS_FILE}: genlab reads safetensors weights only")
        return str(path)
    try:
        return hf_hub_download(repo_id=model_id, filename=WEIGHTS_FILE, **download)
    except LocalEntryNotFoundError:                    # not in the local cache: the caller may download it
        raise
    except EntryNotFoundError:
        raise HubError(f"the repo {model_id!r} has no {WEIGHTS_FILE}: genlab reads safetensors weights only "
                       f"(never pickled ones such as pytorch_model.bin)") from None


def latent_description(model) -> str:
    """What a latent model's generator takes, in words; "none" for a model without explicit latents."""
    if not isinstance(model, HasLatents):
        return "none (samples are drawn by the model's own procedure)"
    spec = model.latent_spec()
    latent = f"z {' x '.join(map(str, spec.z_shape))} ({spec.z_prior})"
    if spec.num_classes:
        latent += f", class of {spec.num_classes}"
    if spec.categorical:
        latent += f", categorical codes {spec.categorical}"
    if spec.continuous:
        latent += f", {spec.continuous} continuous codes"
    return latent


def capabilities(model) -> list[str]:
    """What the model can do beyond sampling, by the protocols it implements."""
    found = []
    if has_classes(model):
        found.append(f"sample by class (`model.sample(n, y=labels)`, {model.config.num_classes} classes)")
    if isinstance(model, HasLatents):
        found.append("generate from latents (`model.generate(**latents)`)")
    if isinstance(model, HasEncoder):
        found.append("encode images (`model.encode(x)`)")
    if isinstance(model, HasLikelihood):
        found.append("score images (`model.nll(x01, k=...)`, nats per image)")
    if isinstance(model, HasCodes):
        found.append("infer codes (`model.infer_codes(x)`)")
    return found


def grid_rows(model) -> str:
    """What the rows of `model.sample_grid` run over."""
    if has_classes(model):
        return "the classes"
    if isinstance(model, HasLatents) and model.latent_spec().categorical:
        return "the values of the first categorical code"
    return "different seeds"


def card_fields(wrapper: GenlabHubModel) -> dict:
    """The values the model card template shows, chosen by what the model can do."""
    import json
    meta, model = wrapper.genlab_meta, wrapper.model
    dataset = meta["train_config"].get("dataset", "unknown")
    usage = ""
    if has_classes(model):
        usage += "\nimages = model.sample(10, y=torch.arange(10))  # one per class"
    if isinstance(model, HasLikelihood):
        usage += "\nnats = model.nll(x01, k=1000)      # -log p(x) bound per image, x01 in [0, 1]"
    return {"title": f"genlab {meta['model']} ({dataset})", "registered_name": meta["model"], "step": meta["step"],
            "dataset": dataset, "channels": model.config.channels, "image_size": model.config.image_size,
            "latent": latent_description(model), "capabilities": "; ".join(capabilities(model)) or "sample",
            "rows": grid_rows(model), "usage": usage, "dtype": "float16" if wrapper.half_weights else "float32",
            "sample_grid": SAMPLE_GRID_FILE, "repo_id": "<user>/<repo>",
            "train_config": json.dumps(meta["train_config"], indent=2, sort_keys=True)}


def to_hub_model(source: str | Path) -> GenlabHubModel:
    """Wrap a checkpoint file or run folder's model for the Hub (weights copied, config kept)."""
    header, tensors = read_checkpoint(source)
    model = model_from_checkpoint(header, tensors, source)
    wrapper = GenlabHubModel(header["model"], to_dict(model.config), int(header.get("step", 0)),
                             header.get("train_config") or {}, header.get("dropped", []))
    wrapper.model.load_state_dict(model.state_dict(), strict=True)
    return wrapper.eval()


def save_for_hub(source: str | Path, folder: str | Path, half: bool = True, repo_id: str | None = None) -> Path:
    """Write the folder `push` uploads (weights, config.json, README.md, sample grid) locally."""
    wrapper = to_hub_model(source)
    wrapper.half_weights = half
    wrapper.save_pretrained(folder, model_card_kwargs={"repo_id": repo_id or "<user>/<repo>"})
    return Path(folder)


def push(source: str | Path, repo_id: str, private: bool | None = None, token: str | None = None,
         half: bool = True) -> str:
    """Push a run or checkpoint to a Hub model repo (created if needed); returns the commit URL."""
    from huggingface_hub.errors import HfHubHTTPError
    wrapper = to_hub_model(source)
    wrapper.half_weights = half
    require_hub()
    try:
        return str(wrapper.push_to_hub(repo_id, private=private, token=token,
                                       commit_message=f"genlab: {wrapper.genlab_meta['model']} at step "
                                                      f"{wrapper.genlab_meta['step']}",
                                       model_card_kwargs={"repo_id": repo_id}))
    except HfHubHTTPError as error:
        raise HubError(f"the Hub refused the push to {repo_id}: {error}. Log in first "
                       f"(`hf auth login`, or HF_TOKEN) with a token that can write to it.") from None


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the Hub endpoint answers a TCP connection (fast offline detection; no HTTP)."""
    from huggingface_hub import constants
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                      timeout=timeout_s):
            return True
    except OSError:
        return False


def require_hub() -> None:
    """Raise a clear HubError when offline (HF_HUB_OFFLINE set, or the endpoint unreachable)."""
    from huggingface_hub import constants, is_offline_mode
    if is_offline_mode() or not hub_reachable():
        raise HubError(f"cannot reach the Hugging Face Hub at {constants.ENDPOINT}: this machine looks "
                       f"offline (or HF_HUB_OFFLINE is set). Local checkpoints in checkpoints/ and runs in "
                       f"runs/ keep working; a repo downloaded before loads from the local cache.")


def load_from_hub(repo_id_or_folder: str | Path, revision: str | None = None, device: str = "cpu"):
    """A genlab model (eval mode) from a Hub repo id or a local folder in the same layout.

    A repo already in the local cache loads without the network; otherwise it is downloaded
    (`hf_hub_download` through the mixin's `from_pretrained`). Only model.safetensors is read, by
    `genlab.checkpoint`, loaded with strict=True; torch.load is never called."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    target = str(repo_id_or_folder)

    def attempt(local_only: bool):
        return GenlabHubModel.from_pretrained(target, revision=revision, local_files_only=local_only,
                                              strict=True, map_location=device)
    try:
        if Path(target).is_dir():
            if not (Path(target) / "config.json").exists():
                raise HubError(f"{target} is not a genlab Hub folder (no config.json)")
            wrapper = attempt(False)
        else:
            try:
                wrapper = attempt(True)                                   # the local cache, no network
            except (LocalEntryNotFoundError, TypeError, OSError):
                require_hub()
                wrapper = attempt(False)
    except RepositoryNotFoundError:
        raise HubError(f"no model repo {target!r} on the Hub (or it is private: log in with a token "
                       f"that can read it)") from None
    except (HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise HubError(f"cannot fetch {target!r} from the Hub: {error}") from None
    except TypeError as error:                         # config.json without genlab's init arguments
        raise HubError(f"{target!r} is not a genlab model repo (its config.json does not describe a "
                       f"genlab model: {error})") from None
    except ConfigError as error:                       # config.json names no registered model, or bad values
        raise HubError(f"{target!r}: its config.json does not describe a genlab model: {error}") from None
    except CheckpointError as error:                   # unreadable weights, or not those config.json describes
        raise HubError(f"{target!r}: {error}") from None
    except RuntimeError as error:
        if isinstance(error, HubError):
            raise
        raise HubError(f"{target!r}: the weights do not match the model its config.json describes: "
                       f"{error}") from None
    model = wrapper.model.to(device).eval()
    model.checkpoint_header = dict(wrapper.genlab_meta, source=target)
    return model


def main(argv=None) -> int:
    """python -m genlab.hub {push,save,pull} ..."""
    parser = argparse.ArgumentParser(prog="python -m genlab.hub", description="Hugging Face Hub push/pull.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("push", help="Push a checkpoint file or run folder to a Hub model repo.")
    p.add_argument("source")
    p.add_argument("repo_id")
    p.add_argument("--private", action="store_true")
    p.add_argument("--fp32", action="store_true", help="Keep float32 weights (default: float16).")
    s = commands.add_parser("save", help="Write the folder push would upload, locally.")
    s.add_argument("source")
    s.add_argument("folder")
    s.add_argument("--fp32", action="store_true")
    g = commands.add_parser("pull", help="Download (or read from the cache) and load a repo.")
    g.add_argument("repo_id")
    args = parser.parse_args(argv)
    try:
        if args.command == "push":
            print(push(args.source, args.repo_id, private=args.private or None, half=not args.fp32))
        elif args.command == "save":
            print(save_for_hub(args.source, args.folder, half=not args.fp32))
        else:
            model = load_from_hub(args.repo_id)
            print(f"{model.name} at step {model.checkpoint_header.get('step')}: latent {latent_description(model)}; "
                  f"can {'; '.join(capabilities(model)) or 'sample'}")
    except (HubError, CheckpointError) as error:
        print(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
