#!/usr/bin/env python
"""A short, complete training script on imagenet-pipe shards: DALI loader, mixed precision,
channels-last, DistributedDataParallel under torchrun, exact-once evaluation.

    python tools/train_example.py --shards demo/shards --steps 20
    torchrun --nproc_per_node 8 tools/train_example.py --shards shards/imagenet1k --epochs 90 --model timm:resnet50 \
        --checkpoint run/ckpt.pt --save-every 500 --resume

``--checkpoint`` saves the model, optimizer and the loader's position (``loader.state_dict()``) every
``--save-every`` steps and at the end of each epoch (written to a temporary file, then renamed);
``--resume`` continues from it mid-epoch, with the batches an uninterrupted run would have seen.

``--preset`` picks the training recipe (``train-224``, ``train-224-rand``, ``train-deit3``,
``train-progressive`` or a YAML file) and timm's ``train.py`` flags override it (``--aa``,
``--reprob``, ``--remode``, ``--recount``, ``--color-jitter``, ``--mixup``, ``--cutmix``,
``--smoothing``, ``--aug-repeats``, ...). With mixup, cutmix or label smoothing the loader yields soft
targets and the loss is timm's soft-target cross-entropy.

``--model``: a model spec, read as ``imagenet-pipe eval`` and ``bench`` read it
(``imagenet_pipe.evaluation.spec``): ``small`` (the built-in CNN, default), ``timm:<name>`` or
``tv:<name>`` when timm / torchvision are installed (freshly initialised), a model file or
``package.module:callable``. On a machine without CUDA it trains on the CPU (DALI CPU operators,
bfloat16 autocast, gloo).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from imagenet_pipe import build_loader
from imagenet_pipe.evaluation import SPEC_HELP, load_model

# timm train.py flag -> loader option (the loader takes timm's names; these are train.py's spellings)
RECIPE_FLAGS = [("--aa", "auto_augment", str), ("--color-jitter", "color_jitter", float),
                ("--color-jitter-prob", "color_jitter_prob", float), ("--reprob", "re_prob", float),
                ("--remode", "re_mode", str), ("--recount", "re_count", int), ("--mixup", "mixup_alpha", float),
                ("--cutmix", "cutmix_alpha", float), ("--cutmix-minmax", "cutmix_minmax", float),
                ("--mixup-prob", "mixup_prob", float), ("--mixup-switch-prob", "switch_prob", float),
                ("--mixup-mode", "mixup_mode", str), ("--mixup-off-epoch", "mixup_off_epoch", int),
                ("--smoothing", "label_smoothing", float), ("--aug-repeats", "aug_repeats", int),
                ("--res-schedule", "res_schedule", int)]


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """timm's SoftTargetCrossEntropy: the cross-entropy against a distribution over classes."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class indices (plain recipes) or soft targets (mixup, cutmix, label smoothing)."""
    if labels.dim() == 2:
        return soft_target_cross_entropy(logits, labels)
    return F.cross_entropy(logits, labels)


def recipe_overrides(args: argparse.Namespace) -> dict:
    """The recipe flags given on the command line, as loader options (tuples for multi-value ones)."""
    out = {}
    for _, option, _ in RECIPE_FLAGS:
        value = getattr(args, option)
        out[option] = tuple(value) if isinstance(value, list) else value
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", required=True, help="folder written by `imagenet-pipe convert`")
    p.add_argument("--model", default="small", help=f"model: {SPEC_HELP}")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=0, help="stop each epoch after this many steps (0: full epoch)")
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--size", type=int, help="training size (default: the preset's)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--preset", default="train-224", help="training recipe: a loader preset name or YAML file")
    p.add_argument("--eval-preset", default="eval-224")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="validation")
    p.add_argument("--checkpoint", type=Path, help="file to save training state to (and resume from)")
    p.add_argument("--save-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    p.add_argument("--log-keys", type=Path, help="append each step's sample keys to this file (rank 0)")
    p.add_argument("--log-loss", type=Path, help="append each step's loss to this file (rank 0)")
    for flag, option, kind in RECIPE_FLAGS:
        many = option in ("cutmix_minmax", "res_schedule")
        p.add_argument(flag, dest=option, type=kind, nargs=4 if option == "res_schedule" else 2 if many else None,
                       help=f"loader option {option}")
    return p.parse_args()


def setup_distributed(args: argparse.Namespace) -> tuple[int, int, int, torch.device]:
    """(world size, rank, local rank, device); torchrun sets RANK, WORLD_SIZE, LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    use_cuda = args.device != "cpu" and torch.cuda.is_available()
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return world, rank, local_rank, device


def main() -> None:
    args = parse_args()
    world, rank, local_rank, device = setup_distributed(args)
    use_cuda = device.type == "cuda"

    # --- the imagenet-pipe part: two loaders ---
    loader_device = "gpu" if use_cuda else "cpu"
    train = build_loader(args.shards, args.train_split, args.preset, batch_size=args.batch_size, size=args.size,
                         device=loader_device, memory_format="channels_last", return_keys=args.log_keys is not None,
                         **recipe_overrides(args))
    val = build_loader(args.shards, args.val_split, args.eval_preset, batch_size=args.batch_size,
                       device=loader_device, memory_format="channels_last")
    num_classes = train.shards.num_classes or 1000

    model = load_model(args.model, pretrained=False, num_classes=num_classes).module
    model = model.to(device, memory_format=torch.channels_last)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-5)
    amp_dtype = torch.float16 if use_cuda else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda)
    trainable = model.module if world > 1 else model
    global_step = 0
    if args.resume and args.checkpoint and args.checkpoint.exists():
        state = torch.load(args.checkpoint, map_location=device, weights_only=False)
        trainable.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        train.load_state_dict(state["loader"])  # the same position on every rank (DDP steps in lockstep)
        global_step = state["global_step"]
        if rank == 0:
            print(f"resumed at epoch {state['loader']['epoch']} (global step {global_step})", flush=True)

    def save() -> None:
        if rank == 0 and args.checkpoint:
            state = {"model": trainable.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                     "loader": train.state_dict(), "global_step": global_step}
            args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.checkpoint.with_name(args.checkpoint.name + ".tmp")
            torch.save(state, tmp)
            os.replace(tmp, args.checkpoint)  # a kill never leaves a half-written checkpoint

    while train.state_dict()["epoch"] < args.epochs:
        epoch = train.state_dict()["epoch"]
        model.train()
        steps = min(len(train), args.steps) if args.steps else len(train)
        start, seen = time.perf_counter(), 0
        for step, batch in enumerate(train):
            if step == steps:
                break
            images, labels = batch
            with torch.autocast(device.type, dtype=amp_dtype):
                loss = loss_fn(model(images), labels)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            seen += images.shape[0]
            global_step += 1
            if rank == 0:
                log_step(args, batch, loss)
            if global_step % args.save_every == 0:
                save()
            if rank == 0 and (step % 10 == 0 or step == steps - 1):
                rate = seen * world / (time.perf_counter() - start)
                print(f"epoch {epoch} step {step + 1}/{steps} loss {loss.item():.3f} {rate:.0f} img/s", flush=True)
        if args.steps:  # a shortened epoch: the next pass is the next epoch
            train.set_epoch(epoch + 1)
        save()

        correct, total = evaluate(model, val, device, amp_dtype)
        if rank == 0:
            print(f"epoch {epoch} validation top-1 {correct / max(total, 1):.4f} on {total} images", flush=True)
    train.close()
    val.close()
    if world > 1:
        dist.destroy_process_group()


def log_step(args: argparse.Namespace, batch, loss: torch.Tensor) -> None:
    """--log-keys / --log-loss: one line per step."""
    for path, line in ((args.log_keys, " ".join(getattr(batch, "keys", []))), (args.log_loss, f"{loss.item():.6f}")):
        if path:
            with open(path, "a") as f:
                f.write(line + "\n")


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp_dtype: torch.dtype) -> tuple[int, int]:
    """Exact-once over all ranks: each rank sees its share once; the counts are summed."""
    model.eval()
    counts = torch.zeros(2, dtype=torch.int64, device=device)
    for images, labels in loader:
        with torch.autocast(device.type, dtype=amp_dtype):
            predictions = model(images).argmax(1)
        counts += torch.stack([(predictions == labels).sum(), torch.tensor(labels.numel(), device=device)])
    if dist.is_initialized():
        dist.all_reduce(counts)
    return int(counts[0]), int(counts[1])


if __name__ == "__main__":
    main()
