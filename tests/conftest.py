"""Shared fixtures: fake raw downloads (generated, laid out like the real ones) and their shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagenet_pipe.conversion import convert
from imagenet_pipe.fakes.imagenet1k import FakeImageNet1k, make_imagenet1k, plan

# (layout, variant) pairs covering every raw form of ImageNet-1K the converter accepts
LAYOUTS_1K = [("official", None), ("kaggle", "nested"), ("kaggle", "direct"), ("kaggle", "extracted"),
              ("folder", "classes"), ("folder", "flat")]


def quiet(_msg: str) -> None:
    pass


def converted_fake(tmp_path_factory, name: str, shard_size, splits=None, **fake) -> Path:
    """A fake ImageNet-1K download in the official layout (``fake``: :func:`make_imagenet1k`'s
    plan arguments), converted into shards of ``shard_size``; returns the shard folder."""
    raw, out = tmp_path_factory.mktemp(f"raw-{name}"), tmp_path_factory.mktemp(f"shards-{name}")
    make_imagenet1k(raw, "official", **fake)
    convert("imagenet1k", raw, out, workers=2, shard_size=shard_size, splits=splits, progress=False, log=quiet)
    return out


@pytest.fixture(scope="session")
def fake1k() -> FakeImageNet1k:
    """8 classes x 6 train images + 12 validation images, tiny JPEGs, all the real quirks."""
    return plan(num_classes=8, train_per_class=6, val_images=12, style="small", seed=0)


@pytest.fixture(scope="session")
def raw1k(tmp_path_factory, fake1k):
    """Factory: the fake download written in a given layout (cached per session)."""
    made: dict[tuple[str, str | None], Path] = {}

    def make(layout: str = "official", variant: str | None = None) -> Path:
        if (layout, variant) not in made:
            root = tmp_path_factory.mktemp(f"raw-{layout}-{variant}")
            make_imagenet1k(root, layout, variant=variant, fake=fake1k)
            made[(layout, variant)] = root
        return made[(layout, variant)]

    return make


@pytest.fixture(scope="session")
def shards1k(tmp_path_factory, raw1k) -> Path:
    """The official-layout fake converted with 8 samples per shard (read-only for tests)."""
    out = tmp_path_factory.mktemp("shards1k")
    convert("imagenet1k", raw1k("official"), out, workers=2, shard_size=8, progress=False, log=quiet)
    return out


# --- object storage: a real SeaweedFS S3 server --------------------------------------------------

@pytest.fixture(scope="session")
def s3server(tmp_path_factory):
    """One SeaweedFS server for the session (skipped, with the reason, only where `weed` cannot run)."""
    from .s3server import SESSION_BUCKET, running_server

    with running_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.make_bucket(SESSION_BUCKET)
        yield server


@pytest.fixture
def s3env(s3server, monkeypatch):
    """The standard AWS environment pointing at the session's server (inherited by subprocesses)."""
    from .s3server import point_aws_env_at

    point_aws_env_at(s3server, monkeypatch)
    return s3server


@pytest.fixture
def s3prefix(s3env) -> str:
    """A fresh, empty ``s3://<the session's bucket>/<unique prefix>`` for one test. One bucket for
    all: SeaweedFS grows 7 volumes for each new bucket, and a volume server holds a bounded number."""
    import uuid

    from .s3server import SESSION_BUCKET

    return f"s3://{SESSION_BUCKET}/{uuid.uuid4().hex[:12]}"
